"""Crashes while a new version of an artifact is stored: the uploading process dies (``os._exit``)
right where it would append the artifact-committed event, or right after that event was acknowledged
and before the new version was switched in. What the server serves must be the last committed
version, with the sha256 of the last commit event: at once in the first case, and once the worker has
settled the left-over version (after the grace period) in the second."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest

from tests.integration.harness import REPO, ServerHandle, STAGING_GRACE_S, wait_until

CRASHING_UPLOAD = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from trackstream.config import Settings
    from trackstream.producer.client import TrackingClient

    first, second, where = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    client = TrackingClient(Settings.from_env())
    exp = client.create_experiment(f"crash-{where}")
    run_id = client.create_run(exp, run_name="crash", provenance=False)
    client.log_artifact(run_id, first)
    assert client.flush(60) == 0
    print(run_id, exp, flush=True)

    def crash(*args):
        if where == "before-switch":  # the commit event is delivered; the switch never happens
            assert client.flush(60) == 0
        os._exit(9)

    if where == "before-commit":  # the new version is stored; the process dies before its commit event
        client.uploader.commit = crash
    else:
        client.uploader.store.publish = crash
    os.replace(second, first)
    client.log_artifact(run_id, first)
""")
GRACE_S = STAGING_GRACE_S


@pytest.fixture(scope="module")
def server(short_grace_server) -> ServerHandle:
    return short_grace_server


def crash_while_replacing(server: ServerHandle, tmp_path: Path, where: str) -> tuple[str, str, bytes, bytes]:
    """Upload a first version and commit it, then die storing a second one: (run, experiment, first, second)."""
    first, second = b"version one\n" * 1000, f"version two, {where}\n".encode() * 700
    (tmp_path / "model.bin").write_bytes(first)
    (tmp_path / "next.bin").write_bytes(second)
    done = subprocess.run([sys.executable, "-c", CRASHING_UPLOAD, str(tmp_path / "model.bin"), str(tmp_path / "next.bin"),
                           where], env=dict(server.env, TRACKSTREAM_DISABLE_PROVENANCE="1"), cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 9, done.stderr
    run_id, experiment_id = done.stdout.split()
    return run_id, experiment_id, first, second


def last_commit(server: ServerHandle, run_id: str) -> tuple[str, int]:
    rows = server.sql(f"SELECT sha256, size FROM {server.settings.database}.artifacts WHERE run_id = '{run_id}' "
                      f"AND path = 'model.bin' ORDER BY committed_at")
    return tuple(rows[-1]) if rows else (None, None)


def served(server: ServerHandle, experiment_id: str, run_id: str) -> bytes:
    with urllib.request.urlopen(f"{server.settings.server_url}/api/2.0/mlflow-artifacts/artifacts/"
                                f"{experiment_id}/{run_id}/artifacts/model.bin", timeout=30) as response:
        return response.read()


def versions_left(server: ServerHandle) -> list[str]:
    versions = server.settings.artifact_root / ".versions"
    return sorted(os.listdir(versions)) if versions.exists() else []


def test_a_crash_between_storing_and_committing_keeps_serving_the_committed_version(server, tmp_path):
    run_id, experiment_id, committed, _ = crash_while_replacing(server, tmp_path, "before-commit")
    last_sha, last_size = wait_until(lambda: last_commit(server, run_id)[0] and last_commit(server, run_id), 60,
                                     "the commit materialized")
    assert last_sha == hashlib.sha256(committed).hexdigest()

    assert hashlib.sha256(served(server, experiment_id, run_id)).hexdigest() == last_sha
    on_disk = server.settings.artifact_root / experiment_id / run_id / "artifacts" / "model.bin"
    assert hashlib.sha256(on_disk.read_bytes()).hexdigest() == last_sha
    with urllib.request.urlopen(f"{server.settings.server_url}/api/2.0/mlflow/artifacts/list?run_id={run_id}",
                                timeout=30) as response:
        listing = json.load(response)
    assert listing["files"] == [{"path": "model.bin", "is_dir": False, "file_size": last_size}]

    # The uncommitted version is left over; once the grace period is over the worker removes it.
    wait_until(lambda: versions_left(server) == [], 10 * GRACE_S, "the uncommitted version removed")
    assert hashlib.sha256(served(server, experiment_id, run_id)).hexdigest() == last_sha


def test_a_crash_between_committing_and_switching_in_is_settled_by_the_worker(server, tmp_path):
    run_id, experiment_id, first, second = crash_while_replacing(server, tmp_path, "before-switch")
    new_sha = hashlib.sha256(second).hexdigest()
    wait_until(lambda: last_commit(server, run_id)[0] == new_sha, 60, "the second commit materialized")

    # The commit was acknowledged, the switch never happened: once the left-over version is older than
    # the grace period the worker switches it in, and what is served matches the last commit again.
    settled = wait_until(lambda: hashlib.sha256(served(server, experiment_id, run_id)).hexdigest() == new_sha,
                         10 * GRACE_S, "the committed version switched in")
    assert settled and versions_left(server) == []
    assert served(server, experiment_id, run_id) == second
