"""Running `trackstream server` in the background for `trackstream up` / `down`.

Only the pid recorded in ``<home>/server.pid`` is ever signalled, and only while its command
line is still a trackstream server of this home.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from trackstream.infra.processes import launch_detached, pid_alive, read_pid, stop_recorded, write_atomically
from trackstream.config import Settings
from trackstream.errors import ServiceUnavailable
from trackstream.reading import HttpReader, is_trackstream_server

SERVER_MARKER = "trackstream.cli"


class ServerProcess:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pid_path = settings.home / "server.pid"
        self.log_path = settings.home / "server.log"

    def owned_pid(self) -> int | None:
        pid = read_pid(self.pid_path)
        return pid if pid is not None and is_trackstream_server(pid) else None

    def start(self, timeout: float = 90.0) -> tuple[int, bool]:
        """Start detached unless ours is running; returns (pid, started_now)."""
        pid = self.owned_pid()
        if pid is not None:
            return pid, False
        env = dict(os.environ, TRACKSTREAM_HOME=str(self.settings.home))
        pid = launch_detached([sys.executable, "-m", SERVER_MARKER, "server"], self.log_path, env)
        write_atomically(self.pid_path, f"{pid}\n")
        reader = HttpReader(self.settings.server_url, timeout=2)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                raise ServiceUnavailable(f"trackstream server exited during start; see {self.log_path}:\n"
                                         + _tail(self.log_path))
            if reader.healthy():
                return pid, True
            time.sleep(0.3)
        raise ServiceUnavailable(f"trackstream server did not answer on {self.settings.server_url} within "
                                 f"{timeout:.0f} s; see {self.log_path}")

    def stop(self, timeout: float = 30.0) -> bool:
        return stop_recorded(self.pid_path, self.owned_pid(), timeout, "trackstream server")


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "<no log>"
