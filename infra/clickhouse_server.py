"""A real ClickHouse server (HTTP + native TCP) run from the ``chdb-core`` wheel, for local clusters.

The wheel embeds clickhouse-local, which can start ClickHouse's own HTTP and TCP listeners with
``SYSTEM START LISTEN``. The listeners live only while the query that started them runs, so the
server process runs one query that starts them and then sleeps row by row forever. Known limits
(why this stays in one module with its own tests):

- ``chdb._chdb.query`` is private: ``chdb-core`` is pinned exactly in ``pyproject.toml``;
- one server per process (the engine is process-global);
- the output format must be ``TabSeparated`` or clickhouse-connect's version probe fails;
- the built-in ``default`` user has no password, so only loopback addresses are accepted;
- ``chdb.connect()`` refuses to start listeners.

Real deployments run the official ``clickhouse-server`` (infra/docker-compose.yml) with the same
SQL and settings. Everything lives under ``<home>/clickhouse-server/``::

    config.xml   listen_host, http_port, tcp_port (read from the working directory)
    data/        the engine's data path (kept across restarts)
    server.log   the process's stdout/stderr
    server.pid   pid of the running server
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from trackstream.infra.processes import (
    InfraError,
    directory_lock,
    ensure_ports_free,
    launched_log_tail,
    launch_detached,
    owned_pid,
    port_is_free,
    stop_recorded,
    wait_until_answering,
    write_atomically,
)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_HTTP_PORT = 18123
DEFAULT_TCP_PORT = 19000
SERVE_MODULE = "trackstream.infra.clickhouse_server"
SERVE_COMMAND = "serve"
LAUNCH_MARKER = "==== trackstream: launching ClickHouse server"
ERROR_TAIL_LINES = 30
# Rows of one second each: the query never ends, and sleeping costs no CPU. One row per block
# keeps each sleep under ClickHouse's per-block sleep limit (3 s).
KEEP_LISTENING_QUERY = (
    "SELECT sleepEachRow(1) FROM system.numbers SETTINGS max_block_size = 1 FORMAT Null"
)


@dataclass(frozen=True)
class ClickHouseServerStatus:
    running: bool
    pid: int | None
    dsn: str
    log_path: Path
    data_dir: Path
    answering: bool


def require_loopback(host: str) -> str:
    """``host`` if it is a loopback address; the server's ``default`` user has no password."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise InfraError(
            f"the chdb ClickHouse server only binds loopback addresses (got {host!r}): its "
            "`default` user has no password. Run the official clickhouse-server elsewhere."
        )
    return host


def server_config_xml(host: str, http_port: int, tcp_port: int) -> str:
    """The ``config.xml`` clickhouse-local reads from its working directory."""
    return (
        "<clickhouse>"
        f"<listen_host>{escape(require_loopback(host))}</listen_host>"
        f"<http_port>{int(http_port)}</http_port>"
        f"<tcp_port>{int(tcp_port)}</tcp_port>"
        "</clickhouse>\n"
    )


def serve_query() -> str:
    """The one query the server process runs: start both listeners, then keep them alive."""
    return f"SYSTEM START LISTEN HTTP; SYSTEM START LISTEN TCP; {KEEP_LISTENING_QUERY}"


def serve_command(python: str, data_dir: Path) -> list[str]:
    return [python, "-m", SERVE_MODULE, SERVE_COMMAND, "--data-dir", str(data_dir)]


def is_server_cmdline(cmdline: Sequence[str], data_dir: Path) -> bool:
    """True when the arguments run this module's ``serve`` on exactly ``data_dir``."""
    if SERVE_MODULE not in cmdline or SERVE_COMMAND not in cmdline:
        return False
    args = list(cmdline)
    return "--data-dir" in args and args.index("--data-dir") + 1 < len(args) and \
        args[args.index("--data-dir") + 1] == str(data_dir)


def http_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether ClickHouse answers ``/ping`` over HTTP at ``host:port``."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/ping", timeout=timeout) as response:
            return response.status == 200 and response.read().strip() == b"Ok."
    except (OSError, urllib.error.URLError):
        return False


class ClickHouseServer:
    """A local ClickHouse server whose files live under ``<home>/clickhouse-server/``."""

    def __init__(
        self,
        home: Path | str,
        *,
        http_port: int = DEFAULT_HTTP_PORT,
        tcp_port: int = DEFAULT_TCP_PORT,
        host: str = DEFAULT_HOST,
        python: str = sys.executable,
    ) -> None:
        if http_port == tcp_port:
            raise InfraError(f"the HTTP and TCP ports must differ (both are {http_port})")
        self.home = Path(home).expanduser().resolve()
        self.http_port = http_port
        self.tcp_port = tcp_port
        self.host = require_loopback(host)
        self.python = python

    @property
    def server_dir(self) -> Path:
        return self.home / "clickhouse-server"

    @property
    def config_path(self) -> Path:
        return self.server_dir / "config.xml"

    @property
    def data_dir(self) -> Path:
        return self.server_dir / "data"

    @property
    def log_path(self) -> Path:
        return self.server_dir / "server.log"

    @property
    def pid_path(self) -> Path:
        return self.server_dir / "server.pid"

    @property
    def dsn(self) -> str:
        """The clickhouse-connect DSN of the HTTP interface."""
        return f"http://default:@{self.host}:{self.http_port}"

    def status(self) -> ClickHouseServerStatus:
        pid = self._owned_pid()
        return self._status(pid, answering=pid is not None and http_answers(self.host, self.http_port))

    def start(self, timeout: float = 60) -> ClickHouseServerStatus:
        """Start the server unless it already runs; return once HTTP answers."""
        with self._lock():
            pid = self._owned_pid()
            if pid is not None:
                return self._wait_until_answering(pid, timeout, stop_on_failure=False)
            self.pid_path.unlink(missing_ok=True)
            ensure_ports_free(self.host, {"ClickHouse HTTP": self.http_port, "ClickHouse TCP": self.tcp_port},
                              f"the server recorded in {self.pid_path}")
            write_atomically(self.config_path, server_config_xml(self.host, self.http_port, self.tcp_port))
            self.data_dir.mkdir(parents=True, exist_ok=True)
            pid = launch_detached(serve_command(self.python, self.data_dir), self.log_path,
                                  cwd=self.server_dir, banner=LAUNCH_MARKER)
            write_atomically(self.pid_path, f"{pid}\n")
            return self._wait_until_answering(pid, timeout, stop_on_failure=True)

    def stop(self, timeout: float = 30) -> bool:
        """Stop the server named by our pidfile, if it really is ours. True if one was stopped."""
        with self._lock():
            stopped = stop_recorded(self.pid_path, self._owned_pid(), timeout, "ClickHouse server")
            if stopped:
                self._wait_for_ports_released(timeout)
            return stopped

    def _wait_for_ports_released(self, timeout: float) -> None:
        """A killed multi-threaded process reads as a zombie while its other threads still hold
        the listening sockets; a restart right after ``stop`` needs them closed."""
        deadline = time.monotonic() + timeout
        while not all(port_is_free(self.host, port) for port in (self.http_port, self.tcp_port)):
            if time.monotonic() >= deadline:
                raise InfraError(f"the ClickHouse server's ports {self.http_port}/{self.tcp_port} were "
                                 f"still bound {timeout:.0f}s after it was stopped")
            time.sleep(0.1)

    def _status(self, pid: int | None, *, answering: bool) -> ClickHouseServerStatus:
        return ClickHouseServerStatus(running=pid is not None, pid=pid, dsn=self.dsn, log_path=self.log_path,
                                      data_dir=self.data_dir, answering=answering)

    def _owned_pid(self) -> int | None:
        return owned_pid(self.pid_path, lambda cmdline: is_server_cmdline(cmdline, self.data_dir))

    def _lock(self) -> contextlib.AbstractContextManager[None]:
        return directory_lock(self.server_dir)

    def _wait_until_answering(self, pid: int, timeout: float, *, stop_on_failure: bool) -> ClickHouseServerStatus:
        wait_until_answering(pid, self.pid_path, lambda: http_answers(self.host, self.http_port), timeout,
                             stop_on_failure=stop_on_failure, what="ClickHouse server",
                             where=f"{self.host}:{self.http_port}", log_path=self.log_path, log_tail=self._log_tail)
        return self._status(pid, answering=True)

    def _log_tail(self) -> str:
        return launched_log_tail(self.log_path, LAUNCH_MARKER, ERROR_TAIL_LINES, "server")


def serve(data_dir: Path) -> None:
    """Run the server in this process until it is killed (``config.xml`` in the working directory)."""
    from chdb import _chdb  # private API: chdb-core is pinned exactly for it

    if not Path("config.xml").is_file():
        raise InfraError(f"no config.xml in {os.getcwd()}: start the server through ClickHouseServer.start")
    _chdb.query(serve_query(), "TabSeparated", path=str(data_dir))
    raise InfraError("the ClickHouse server's keep-alive query returned; the listeners are gone")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {SERVE_MODULE}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve_parser = sub.add_parser(SERVE_COMMAND, help="run the server in the foreground")
    serve_parser.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    serve(args.data_dir)
    return 1


if __name__ == "__main__":
    sys.exit(main())
