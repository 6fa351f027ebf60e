"""A crash between storing a new version of an artifact and committing it: the process that uploads is
killed (``os._exit``) right where it would append the artifact-committed event. What the server serves
afterwards must be the last committed version, with the sha256 of the last commit event."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator

import pytest

from tests.integration.harness import REPO, ServerHandle, running_server, wait_until

CRASHING_UPLOAD = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from trackstream.config import Settings
    from trackstream.producer.client import TrackingClient

    first, second = Path(sys.argv[1]), Path(sys.argv[2])
    client = TrackingClient(Settings.from_env())
    exp = client.create_experiment("promote-crash")
    run_id = client.create_run(exp, run_name="crash", provenance=False)
    client.log_artifact(run_id, first)
    assert client.flush(60) == 0
    print(run_id, exp, flush=True)

    def crash(*args):  # the new version is stored; the process dies before its commit event
        os._exit(9)

    client.uploader.commit = crash
    os.replace(second, first)
    client.log_artifact(run_id, first)
""")


@pytest.fixture(scope="module")
def server(kafka_bootstrap, tmp_path_factory) -> Iterator[ServerHandle]:
    with running_server(kafka_bootstrap, tmp_path_factory.mktemp("versions"), "versions") as handle:
        yield handle


def test_a_crash_between_storing_and_committing_keeps_serving_the_committed_version(server, tmp_path):
    committed, uncommitted = b"version one\n" * 1000, b"version two, never committed\n" * 700
    (tmp_path / "model.bin").write_bytes(committed)
    (tmp_path / "next.bin").write_bytes(uncommitted)
    done = subprocess.run([sys.executable, "-c", CRASHING_UPLOAD, str(tmp_path / "model.bin"), str(tmp_path / "next.bin")],
                          env=dict(server.env, TRACKSTREAM_DISABLE_PROVENANCE="1"), cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 9, done.stderr
    run_id, experiment_id = done.stdout.split()

    database = server.settings.database
    rows = wait_until(lambda: server.sql(f"SELECT sha256, size FROM {database}.artifacts WHERE run_id = '{run_id}' "
                                         f"AND path = 'model.bin' ORDER BY committed_at"), 60, "the commit materialized")
    last_sha, last_size = rows[-1]
    assert last_sha == hashlib.sha256(committed).hexdigest()

    base = f"{server.settings.server_url}/api/2.0/mlflow-artifacts/artifacts/{experiment_id}/{run_id}/artifacts"
    with urllib.request.urlopen(f"{base}/model.bin", timeout=30) as response:
        served = response.read()
    assert hashlib.sha256(served).hexdigest() == last_sha
    on_disk = server.settings.artifact_root / experiment_id / run_id / "artifacts" / "model.bin"
    assert hashlib.sha256(on_disk.read_bytes()).hexdigest() == last_sha

    with urllib.request.urlopen(f"{server.settings.server_url}/api/2.0/mlflow/artifacts/list?run_id={run_id}",
                                timeout=30) as response:
        listing = json.load(response)
    assert listing["files"] == [{"path": "model.bin", "is_dir": False, "file_size": last_size}]
