"""Artifacts in an S3-compatible bucket: a real S3 server on loopback (moto's), the real broker and
a real trackstream server.

A training process configured with ``TRACKSTREAM_ARTIFACT_STORE=s3://...`` uploads in multipart
chunks, verifies what landed and only then commits; an upload cut off by the S3 server going away
mid-file is never committed and holds its run in FINALIZING.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import moto.server as moto_server
import pytest
from botocore.config import Config
from mlflow import MlflowClient

from trackstream.producer.artifacts import ArtifactUploadError, S3ArtifactStore
from trackstream.producer.client import TrackingClient
from tests.integration.harness import REPO, ServerHandle, free_port, make_server, wait_until

BUCKET = "trackstream-artifacts"
PREFIX = "team/vision"
MIB = 1024 * 1024
S3_ENV = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}


class S3Server:
    """moto's S3 server in a thread on a loopback port; ``stop`` and ``start`` keep the buckets."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: moto_server.ThreadedMotoServer | None = None

    def start(self) -> None:
        self._server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def client(self, **config: object):
        return boto3.client("s3", endpoint_url=self.url, config=Config(**config), **_boto_credentials())


def _boto_credentials() -> dict[str, str]:
    return {"aws_access_key_id": S3_ENV["AWS_ACCESS_KEY_ID"], "aws_secret_access_key": S3_ENV["AWS_SECRET_ACCESS_KEY"],
            "region_name": S3_ENV["AWS_DEFAULT_REGION"]}


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    server = S3Server()
    server.start()
    server.client().create_bucket(Bucket=BUCKET)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def server(s3, kafka_bootstrap, tmp_path_factory) -> Iterator[ServerHandle]:
    """A server configured with the same S3 store as the training processes: its mlflow-artifacts
    proxy lists, serves and stores through it."""
    handle = make_server(kafka_bootstrap, tmp_path_factory.mktemp("s3"), f"s3{uuid.uuid4().hex[:6]}")
    handle.env_overrides.update(S3_ENV, AWS_ENDPOINT_URL=s3.url, TRACKSTREAM_ARTIFACT_STORE=f"s3://{BUCKET}/{PREFIX}")
    handle.start()
    try:
        yield handle
    finally:
        handle.stop()


def objects(s3: S3Server, prefix: str) -> dict[str, str]:
    """key -> sha256 of every object under ``prefix``."""
    client = s3.client()
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for obj in page.get("Contents", ()):
            body = client.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read()
            found[obj["Key"]] = hashlib.sha256(body).hexdigest()
    return found


TRAINING_SCRIPT = textwrap.dedent("""
    import sys
    import trackstream as ts

    ts.set_experiment("s3-artifacts")
    with ts.start_run(run_name="to-s3") as run:
        ts.log_metric("loss", 0.5, step=1)
        record = ts.log_artifact(sys.argv[1], "checkpoints")
        ts.log_dict({"lr": 0.1}, "config.json")
    assert ts.flush(60) == 0
    print(run.run_id, run.experiment_id, record.uri)
""")


def test_a_training_process_configured_for_s3_commits_verified_multipart_uploads(s3, server, tmp_path):
    checkpoint = tmp_path / "model.ckpt"
    checkpoint.write_bytes(os.urandom(MIB) * 12 + b"tail")  # 12 MiB + 4 bytes: two 8 MiB parts
    env = dict(server.env, **S3_ENV, AWS_ENDPOINT_URL=s3.url, TRACKSTREAM_ARTIFACT_STORE=f"s3://{BUCKET}/{PREFIX}/",
               TRACKSTREAM_DISABLE_PROVENANCE="1")
    done = subprocess.run([sys.executable, "-c", TRAINING_SCRIPT, str(checkpoint)], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    run_id, experiment_id, uri = done.stdout.split()[-3:]
    base = f"{PREFIX}/{experiment_id}/{run_id}/artifacts"
    assert uri == f"s3://{BUCKET}/{base}/checkpoints/model.ckpt"

    run = wait_until(lambda: (r := server.reader.run(run_id))["status"] == "FINISHED" and r, 60, "run FINISHED")
    assert run["missing_artifacts"] == []
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    rows = server.sql(f"SELECT path, size, sha256, uri FROM {server.settings.database}.artifacts "
                      f"WHERE run_id = '{run_id}' ORDER BY path")
    assert rows[1] == ["config.json", len(b'{\n  "lr": 0.1\n}'), hashlib.sha256(b'{\n  "lr": 0.1\n}').hexdigest(),
                       f"s3://{BUCKET}/{base}/config.json"]
    assert rows[0] == ["checkpoints/model.ckpt", checkpoint.stat().st_size, digest, uri]
    stored = objects(s3, f"{PREFIX}/{experiment_id}")
    assert stored == {f"{base}/checkpoints/model.ckpt": digest, f"{base}/config.json": rows[1][2]}
    assert list(objects(s3, f"{PREFIX}/.staging")) == [] and list(objects(s3, f"{PREFIX}/.versions")) == []

    # The unmodified mlflow client sees them through the server's mlflow-artifacts proxy.
    mlflow_client = MlflowClient(tracking_uri=server.settings.server_url)
    top = [(f.path, f.is_dir, f.file_size) for f in mlflow_client.list_artifacts(run_id)]
    assert top == [("checkpoints", True, None), ("config.json", False, rows[1][1])]
    nested = [(f.path, f.file_size) for f in mlflow_client.list_artifacts(run_id, "checkpoints")]
    assert nested == [("checkpoints/model.ckpt", checkpoint.stat().st_size)]
    downloaded = Path(mlflow_client.download_artifacts(run_id, "checkpoints/model.ckpt", str(tmp_path / "down")))
    assert hashlib.sha256(downloaded.read_bytes()).hexdigest() == digest
    whole = Path(mlflow_client.download_artifacts(run_id, "", str(tmp_path / "all")))
    assert (whole / "config.json").read_bytes() == b'{\n  "lr": 0.1\n}'


def test_the_mlflow_client_logs_lists_and_downloads_through_the_proxy_into_s3(s3, server, tmp_path):
    mlflow_client = MlflowClient(tracking_uri=server.settings.server_url)
    experiment_id = mlflow_client.create_experiment(f"s3-proxy-{uuid.uuid4().hex[:6]}")
    run_id = mlflow_client.create_run(experiment_id).info.run_id
    report = tmp_path / "report.txt"
    report.write_text("accuracy 0.91\n")
    mlflow_client.log_artifact(run_id, str(report), "eval")

    base = f"{PREFIX}/{experiment_id}/{run_id}/artifacts"
    digest = hashlib.sha256(report.read_bytes()).hexdigest()
    assert objects(s3, f"{PREFIX}/{experiment_id}") == {f"{base}/eval/report.txt": digest}
    rows = wait_until(lambda: server.sql(f"SELECT path, size, sha256, uri FROM {server.settings.database}.artifacts "
                                         f"WHERE run_id = '{run_id}'"), 60, "the proxy's commit materialized")
    assert rows == [["eval/report.txt", report.stat().st_size, digest, f"s3://{BUCKET}/{base}/eval/report.txt"]]
    assert [(f.path, f.is_dir) for f in mlflow_client.list_artifacts(run_id)] == [("eval", True)]
    assert [(f.path, f.file_size) for f in mlflow_client.list_artifacts(run_id, "eval")] == \
        [("eval/report.txt", report.stat().st_size)]
    back = Path(mlflow_client.download_artifacts(run_id, "eval/report.txt", str(tmp_path / "down")))
    assert back.read_text() == "accuracy 0.91\n"
    local = server.settings.artifact_root / experiment_id
    assert not local.exists() or not any(local.rglob("*"))  # nothing went to the local store


class S3GoesAwayMidUpload(S3ArtifactStore):
    """Stops the S3 server once the first part of a file named 'interrupted*' has been sent."""

    def __init__(self, s3: S3Server) -> None:
        super().__init__(BUCKET, PREFIX, client=s3.client(retries={"max_attempts": 1}, connect_timeout=2),
                         chunk_size=S3ArtifactStore.MIN_PART_SIZE)
        self.s3 = s3

    def put_staged(self, local_path, staging_key, progress):
        if not Path(local_path).name.startswith("interrupted"):
            return super().put_staged(local_path, staging_key, progress)

        def first_part_then_outage(chunk: memoryview) -> None:
            progress(chunk)
            self.s3.stop()

        return super().put_staged(local_path, staging_key, first_part_then_outage)


def test_an_upload_cut_off_by_the_s3_server_going_away_is_never_committed(s3, server, tmp_path, monkeypatch):
    monkeypatch.setenv("TRACKSTREAM_HOME", str(server.settings.home))
    good = tmp_path / "weights.bin"
    good.write_bytes(os.urandom(3 * MIB))
    broken = tmp_path / "interrupted.bin"
    broken.write_bytes(os.urandom(12 * MIB))  # three 5 MiB parts: the outage comes after the first
    client = TrackingClient(server.settings, artifact_store=S3GoesAwayMidUpload(s3))
    client.uploader.backoff = 0
    try:
        exp = client.create_experiment("s3-outage")
        run_id = client.create_run(exp, run_name="held", provenance=False)
        client.log_artifact(run_id, good)
        with pytest.raises(ArtifactUploadError, match="after 4 attempt"):
            client.log_artifact(run_id, broken)
        client.set_terminated(run_id, manifest=[{"path": "interrupted.bin"}])
        assert client.flush(30) == 0
    finally:
        client.close()
        s3.start()

    run = wait_until(lambda: (r := server.reader.run(run_id))["status"] == "FINALIZING" and r, 60, "run FINALIZING")
    assert run["missing_artifacts"] == ["interrupted.bin"]
    rows = server.sql(f"SELECT path FROM {server.settings.database}.artifacts WHERE run_id = '{run_id}'")
    assert rows == [["weights.bin"]]
    assert list(objects(s3, f"{PREFIX}/{exp}/{run_id}")) == [f"{PREFIX}/{exp}/{run_id}/artifacts/weights.bin"]
