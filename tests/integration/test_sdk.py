"""The client SDK against a real broker and a real server: many processes attached to one run,
interrupted artifact uploads, and the fluent API with nested runs and provenance."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import trackstream as ts
from trackstream.producer.artifacts import ArtifactUploadError, LocalArtifactStore
from trackstream.producer.client import TrackingClient
from trackstream.producer.provenance import collect_provenance
from tests.integration.harness import REPO, ServerHandle, running_server, wait_until

RANKS = 32
POINTS_PER_KEY = 1000

RANK_SCRIPT = textwrap.dedent("""
    import os
    import trackstream as ts

    rank = int(os.environ["RANK"])
    with ts.start_run(run_id=os.environ["RUN_ID"], attach=True):
        for i in range({points}):
            ts.log_metric(f"rank/{{rank:02d}}", rank * 100_000 + i, step=i)
            ts.log_metric("shared", float(i), step=rank * {points} + i)
        ts.log_text(f"rank {{rank}}", f"ranks/{{rank:02d}}.txt")
    pending = ts.flush(60)
    assert pending == 0, f"{{pending}} events unacknowledged"
""").format(points=POINTS_PER_KEY)


@pytest.fixture(scope="module")
def server(kafka_bootstrap, tmp_path_factory):
    with running_server(kafka_bootstrap, tmp_path_factory.mktemp("sdk"), "sdk") as handle:
        yield handle


@pytest.fixture
def client(server: ServerHandle, monkeypatch):
    monkeypatch.setenv("TRACKSTREAM_HOME", str(server.settings.home))  # spools under the test's home
    c = TrackingClient(server.settings)
    yield c
    c.close()


def run_status(server: ServerHandle, run_id: str) -> dict:
    return server.reader.run(run_id)


def wait_status(server: ServerHandle, run_id: str, status: str, timeout: float = 60) -> dict:
    return wait_until(lambda: (r := run_status(server, run_id))["status"] == status and r, timeout, f"run {status}")


def test_processes_attached_to_one_run_each_deliver_every_point_once(server, client):
    db = server.settings.database
    exp = client.create_experiment("sdk-distributed")
    run_id = client.create_run(exp, run_name="ddp")
    assert client.flush(30) == 0
    env = dict(server.env, RUN_ID=run_id, TRACKSTREAM_EXPERIMENT_ID=exp, TRACKSTREAM_DISABLE_PROVENANCE="1")
    ranks = [subprocess.Popen([sys.executable, "-c", RANK_SCRIPT], env=dict(env, RANK=str(rank)), cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for rank in range(RANKS)]
    for rank, proc in enumerate(ranks):
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"rank {rank} failed:\n{out}"

    client.set_terminated(run_id, manifest=[{"path": f"ranks/{r:02d}.txt"} for r in range(RANKS)])
    assert client.flush(30) == 0
    total = RANKS * POINTS_PER_KEY * 2
    wait_until(lambda: server.sql(f"SELECT count() FROM {db}.metrics WHERE run_id = '{run_id}'") == [[total]],
               90, f"{total} points")
    rows = server.sql(f"SELECT key, count(), uniqExact(step), sum(value) FROM {db}.metrics "
                      f"WHERE run_id = '{run_id}' GROUP BY key ORDER BY key")
    point_sum = POINTS_PER_KEY * (POINTS_PER_KEY - 1) // 2
    expected = [[f"rank/{r:02d}", POINTS_PER_KEY, POINTS_PER_KEY, r * 100_000 * POINTS_PER_KEY + point_sum]
                for r in range(RANKS)]
    expected.append(["shared", RANKS * POINTS_PER_KEY, RANKS * POINTS_PER_KEY, RANKS * point_sum])
    assert rows == expected
    # the events table is written after metrics within a batch: wait for it, then insist on the count
    wait_until(lambda: server.sql(f"SELECT uniqExact(writer_id) FROM {db}.events "
                                  f"WHERE aggregate_id = '{run_id}'") == [[RANKS + 1]], 60, f"{RANKS + 1} writers")
    run = wait_status(server, run_id, "FINISHED")
    assert run["missing_artifacts"] == []
    assert server.sql(f"SELECT count() FROM {db}.artifacts WHERE run_id = '{run_id}' AND path LIKE 'ranks/%'") \
        == [[RANKS]]
    assert server.sql(f"SELECT count() FROM {db}.rejects WHERE aggregate_id = '{run_id}'") == [[0]]


class InterruptedStore(LocalArtifactStore):
    """Drops the connection halfway through uploading any file whose name contains 'interrupted'."""

    def put_staged(self, local_path, staging_key, progress):
        if "interrupted" not in Path(local_path).name:
            return super().put_staged(local_path, staging_key, progress)
        data = Path(local_path).read_bytes()
        self._staging.mkdir(exist_ok=True)
        self.staging_path(staging_key).write_bytes(data[: len(data) // 2])
        progress(memoryview(data[: len(data) // 2]))
        raise ConnectionResetError("connection reset by peer mid-upload")


def test_an_interrupted_artifact_is_never_committed_and_holds_its_run_back(server, monkeypatch, tmp_path):
    monkeypatch.setenv("TRACKSTREAM_HOME", str(server.settings.home))
    db = server.settings.database
    store = InterruptedStore(server.settings.artifact_root)
    client = TrackingClient(server.settings, artifact_store=store)
    client.uploader.backoff = 0
    model = tmp_path / "model.bin"
    model.write_bytes(b"\x00\x01weights" * 50_000)
    broken = tmp_path / "interrupted.bin"
    broken.write_bytes(b"checkpoint" * 50_000)
    try:
        exp = client.create_experiment("sdk-artifacts")
        held, clean = client.create_run(exp, run_name="held"), client.create_run(exp, run_name="clean")
        client.log_artifact(held, model, "models")
        with pytest.raises(ArtifactUploadError, match="connection reset"):
            client.log_artifact(held, broken, "models")
        client.set_terminated(held, manifest=[{"path": "models/interrupted.bin"}])
        client.log_artifact(clean, model)
        client.set_terminated(clean)
        assert client.flush(30) == 0
    finally:
        client.close()

    wait_status(server, clean, "FINISHED")
    run = wait_status(server, held, "FINALIZING")
    assert run["missing_artifacts"] == ["models/interrupted.bin"]
    statuses = server.sql(f"SELECT DISTINCT status FROM {db}.runs WHERE run_id = '{held}' ORDER BY status")
    assert statuses == [["FINALIZING"], ["RUNNING"]]
    rows = server.sql(f"SELECT run_id, path, size, sha256 FROM {db}.artifacts WHERE run_id IN ('{held}', '{clean}') "
                      f"ORDER BY run_id = '{clean}', path")
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    assert rows == [[held, "models/model.bin", model.stat().st_size, digest],
                    [clean, "model.bin", model.stat().st_size, digest]]
    assert store.list(f"{exp}/{held}") == [f"{exp}/{held}/artifacts/models/model.bin"]
    assert not any((server.settings.artifact_root / ".staging").iterdir())


def test_fluent_runs_with_nesting_and_provenance(server, client):
    ts.set_client(client)
    try:
        exp = ts.set_experiment("sdk-fluent")
        with ts.start_run(run_name="outer", tags={"team": "core"}) as outer:
            ts.log_params({"lr": 0.01})
            for step in range(100):
                ts.log_metric("loss", 1 / (step + 1), step=step)
            with ts.start_run(run_name="inner", nested=True) as inner:
                ts.log_metric("acc", 0.75)
                ts.log_dict({"layers": 3}, "config.json")
        with pytest.raises(RuntimeError):
            with ts.start_run(run_name="crashes") as crashed:
                raise RuntimeError("training diverged")
        assert ts.flush(30) == 0
    finally:
        ts.set_client(None)

    outer_run = wait_status(server, outer.run_id, "FINISHED")
    inner_run = wait_status(server, inner.run_id, "FINISHED")
    wait_status(server, crashed.run_id, "FAILED")
    assert outer_run["experiment_id"] == inner_run["experiment_id"] == exp
    assert inner_run["parent_run_id"] == outer.run_id and outer_run["parent_run_id"] == ""
    assert inner_run["tags"]["mlflow.parentRunId"] == outer.run_id
    assert inner_run["run_name"] == "inner" and inner_run["metrics"]["acc"]["value"] == 0.75
    assert outer_run["params"] == {"lr": "0.01"} and outer_run["metrics"]["loss"]["step"] == 99
    provenance = collect_provenance()
    assert {k: outer_run["tags"][k] for k in provenance} == provenance
    assert {"mlflow.user", "mlflow.source.name", "trackstream.host", "trackstream.python"} <= set(provenance)
    assert outer_run["user_id"] == provenance["mlflow.user"]
    assert outer_run["source_name"] == provenance["mlflow.source.name"]
    assert outer_run["tags"]["team"] == "core"
    artifacts = server.sql(f"SELECT path FROM {server.settings.database}.artifacts WHERE run_id = '{inner.run_id}'")
    assert artifacts == [["config.json"]]
