"""The README's quickstart on a fresh home: `trackstream up`, `demo`, `sql`, `down`, as a user runs
them, against a broker that `up` starts itself (own ports, so the session broker is left alone)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from trackstream.infra.processes import pid_alive
from tests.integration.harness import REPO, free_port

CLI_TIMEOUT_S = 240


def free_port_pair() -> int:
    """A free port whose successor is free too: `trackstream infra` puts the KRaft controller on port + 1."""
    while True:
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


def test_up_then_demo_right_away_then_sql_then_down_on_a_fresh_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKSTREAM_")}
    env.update(TRACKSTREAM_HOME=str(home), TRACKSTREAM_KAFKA=f"127.0.0.1:{free_port_pair()}",
               TRACKSTREAM_SERVER_PORT=str(free_port()))

    def trackstream(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "-m", "trackstream.cli", *args], env=env, cwd=REPO,
                              capture_output=True, text=True, timeout=CLI_TIMEOUT_S)
        assert done.returncode == 0, f"trackstream {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        return done

    try:
        up = trackstream("up")
        assert "Kafka started" in up.stdout and "Server started" in up.stdout
        demo = trackstream("demo", "--steps", "300")  # at once, as infra/quickstart.sh does
        assert "FINISHED" in demo.stdout and "loss" in demo.stdout
        again = trackstream("up")
        assert "Kafka already running" in again.stdout and "Server already running" in again.stdout
        counts = trackstream("sql", "SELECT key, count() AS points FROM trackstream.metrics GROUP BY key ORDER BY key",
                             "--format", "csv")
        assert counts.stdout.split() == ["key,points", "accuracy,300", "loss,300"]
    finally:
        server_pid = int((home / "server.pid").read_text()) if (home / "server.pid").exists() else None
        down = subprocess.run([sys.executable, "-m", "trackstream.cli", "down"], env=env, cwd=REPO,
                              capture_output=True, text=True, timeout=CLI_TIMEOUT_S)
    assert "Server stopped" in down.stdout and "Kafka stopped" in down.stdout, down.stdout + down.stderr
    assert server_pid is not None and not pid_alive(server_pid)
    assert not (home / "server.json").exists()
