"""Uploads killed mid-way leave their bytes in the store's staging area; `trackstream gc-staging` and
the worker's periodic task remove them once they are older than the grace period, and never touch an
upload still in progress or a committed artifact. The uploads here are real ones, killed with SIGKILL."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from trackstream.producer.client import TrackingClient
from tests.integration.harness import REPO, ServerHandle, STAGING_GRACE_S, wait_until

MIB = 1024 * 1024

# Uploads a file into the local store at argv[1] slowly (64 KiB per 20 ms), printing its staging name once it
# has started; argv[3] "commit" lets it finish and commit through the server's SDK settings.
SLOW_UPLOAD = textwrap.dedent("""
    import sys, time
    from trackstream.producer.artifacts import ArtifactUploader, LocalArtifactStore

    class Slow(LocalArtifactStore):
        def put_staged(self, local_path, staging_key, progress):
            print(staging_key, flush=True)
            def slowly(chunk):
                progress(chunk)
                time.sleep(0.02)
            return super().put_staged(local_path, staging_key, slowly)

    commits = []
    uploader = ArtifactUploader(Slow(sys.argv[1], chunk_size=64 * 1024), lambda *args: commits.append(args),
                                progress=False)
    uploader.upload("0123456789abcdef0123456789abcdef", "0", sys.argv[2], "checkpoint.bin")
    print("committed", commits[0][3], flush=True)
""")


def start_slow_upload(root: Path, local: Path) -> tuple[subprocess.Popen, Path]:
    """A running upload and its staging file, once bytes have landed in it."""
    process = subprocess.Popen([sys.executable, "-c", SLOW_UPLOAD, str(root), str(local)], cwd=REPO,
                               stdout=subprocess.PIPE, text=True)
    staged = root / ".staging" / process.stdout.readline().strip()
    wait_until(lambda: staged.exists() and staged.stat().st_size > 0, 30, "bytes in staging")
    return process, staged


def killed_upload(root: Path, local: Path) -> Path:
    process, staged = start_slow_upload(root, local)
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    return staged


def test_gc_staging_removes_a_killed_upload_and_keeps_young_and_committed_files(tmp_path):
    home = tmp_path / "home"
    root = home / "artifacts"
    local = tmp_path / "big.bin"
    local.write_bytes(os.urandom(4 * MIB))
    env = dict(os.environ, TRACKSTREAM_HOME=str(home))
    env.pop("TRACKSTREAM_ARTIFACT_STORE", None)

    def gc(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "trackstream.cli", "gc-staging", *args], env=env, cwd=REPO,
                              capture_output=True, text=True, timeout=60, check=True)

    (tmp_path / "small.bin").write_bytes(b"s" * 1000)
    finished = subprocess.run([sys.executable, "-c", SLOW_UPLOAD, str(root), str(tmp_path / "small.bin")], cwd=REPO,
                              capture_output=True, text=True, timeout=60, env=env)
    committed = root / "0" / "0123456789abcdef0123456789abcdef" / "artifacts" / "checkpoint.bin"
    assert finished.returncode == 0 and committed.read_bytes() == b"s" * 1000

    dead = killed_upload(root, local)
    left = dead.stat().st_size
    assert 0 < left < local.stat().st_size
    old = time.time() - 7200
    os.utime(dead, (old, old))  # killed two hours ago
    os.utime(committed, (old, old))

    young = gc("--older-than", "1h")
    assert young.stdout.splitlines()[-1] == f"removed 1 abandoned upload(s), freed {left:,} bytes; kept 0 younger than 1h"
    assert young.stdout.splitlines()[0].startswith(f"removed .staging/{dead.name}: {left:,} bytes, last written ")
    assert not dead.exists()
    assert committed.read_bytes() == b"s" * 1000

    running, staged = start_slow_upload(root, local)
    try:
        second = gc("--older-than", "1h")
        assert second.stdout.strip() == "removed 0 abandoned upload(s), freed 0 bytes; kept 1 younger than 1h"
        assert staged.exists()
    finally:
        running.kill()
        running.wait(30)

    bad = subprocess.run([sys.executable, "-m", "trackstream.cli", "gc-staging", "--older-than", "soon"], env=env,
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "Invalid duration 'soon'" in bad.stderr


GRACE_S = STAGING_GRACE_S


@pytest.fixture(scope="module")
def server(short_grace_server) -> ServerHandle:
    return short_grace_server


def test_the_server_collects_killed_uploads_but_not_one_in_progress_nor_committed_artifacts(server, tmp_path,
                                                                                            monkeypatch):
    monkeypatch.setenv("TRACKSTREAM_HOME", str(server.settings.home))
    root = server.settings.artifact_root
    client = TrackingClient(server.settings)
    try:
        exp = client.create_experiment("gc")
        run_id = client.create_run(exp, run_name="keeps", provenance=False)
        client.log_text(run_id, "committed and kept", "notes.txt")
        assert client.flush(30) == 0
    finally:
        client.close()
    committed = root / exp / run_id / "artifacts" / "notes.txt"

    local = tmp_path / "big.bin"
    local.write_bytes(os.urandom(3 * MIB))  # 48 chunks of 64 KiB, one per 20 ms: about 3 grace periods
    dead = killed_upload(root, local)
    started = time.monotonic()
    running, in_progress = start_slow_upload(root, local)
    wait_until(lambda: not dead.exists(), 10 * GRACE_S, "the killed upload collected")
    assert time.monotonic() - started >= GRACE_S * 0.9  # not before its grace period was over
    out, _ = running.communicate(timeout=60)  # the slow one outlived several collections and finished
    assert running.returncode == 0 and out.split()[-2:] == ["committed", hashlib.sha256(local.read_bytes()).hexdigest()]
    assert not in_progress.exists()

    time.sleep(2 * GRACE_S)
    assert committed.read_text() == "committed and kept"
    with urllib.request.urlopen(f"{server.settings.server_url}/api/2.0/mlflow-artifacts/artifacts/"
                                f"{exp}/{run_id}/artifacts/notes.txt", timeout=30) as response:
        assert response.read() == b"committed and kept"
