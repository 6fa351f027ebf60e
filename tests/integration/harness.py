"""A real `trackstream server` subprocess (faust worker + embedded ClickHouse + HTTP) for tests."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from trackstream.config import Settings
from trackstream.reading import HttpReader

REPO = Path(__file__).resolve().parents[2]


RESERVED_TEST_PORTS = frozenset({29092, 29093})  # the session broker in tests/conftest.py
_ports_handed_out: set[int] = set()


def ephemeral_port_floor() -> int:
    """The lowest port the kernel hands to outgoing connections (Linux default 32768)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A loopback port nothing is bound to, chosen below the kernel's ephemeral range.

    A port from ``bind(0)`` lies inside that range, so any client connection made before a
    listener binds it (a broker restart, say) can take it as its local port; CI lost a run to
    exactly that on a fixed 39092. Ports below the range are never taken that way.
    """
    floor = ephemeral_port_floor()
    candidates = list(range(10000, floor)) if floor > 11000 else []
    random.shuffle(candidates)
    for port in candidates[:500]:
        if port in RESERVED_TEST_PORTS or port in _ports_handed_out:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _ports_handed_out.add(port)
        return port
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
            if result:
                return result
        except Exception as exc:  # the read side may not have the tables yet
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last error: {last_error})")


@dataclass
class ServerHandle:
    settings: Settings
    log_path: Path
    process: subprocess.Popen | None = None
    env_overrides: dict[str, str] = field(default_factory=dict)
    role: str = "server"  # or "worker" (no HTTP) / "gateway": the trackstream command run

    @property
    def env(self) -> dict[str, str]:
        s = self.settings
        return dict(os.environ, TRACKSTREAM_HOME=str(s.home), TRACKSTREAM_KAFKA=s.kafka_bootstrap,
                    TRACKSTREAM_CLICKHOUSE=s.clickhouse_dsn, TRACKSTREAM_DATABASE=s.database,
                    TRACKSTREAM_TOPIC=s.topic, TRACKSTREAM_DLQ_TOPIC=s.dead_letter_topic,
                    TRACKSTREAM_SERVER_PORT=str(s.server_port), TRACKSTREAM_CONSUMER_GROUP=s.consumer_group,
                    TRACKSTREAM_PARTITIONS=str(s.partitions),
                    TRACKSTREAM_FINALIZE_TIMEOUT_S=str(s.finalize_timeout_s), **self.env_overrides)

    @property
    def reader(self) -> HttpReader:
        return HttpReader(self.settings.server_url, timeout=30)

    def start(self, timeout: float = 90, wait: bool = True) -> "ServerHandle":
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "trackstream.cli", self.role], env=self.env,
                                            stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        if wait and self.role != "worker":
            wait_until(self._healthy_or_exited, timeout, "the server to answer")
            self._alive_or_raise()
        return self

    def _healthy_or_exited(self) -> bool:
        """True once it answers, or as soon as it has exited (``start`` then raises with its log)."""
        return (self.process is not None and self.process.poll() is not None) or self.reader.healthy()

    def _alive_or_raise(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log_tail()}")
        return True

    def kill(self) -> None:
        """SIGKILL: no flush, no offset commit, no clean shutdown of the embedded ClickHouse."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def cli(self, *args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "-m", "trackstream.cli", *args], env=self.env, input=stdin,
                                capture_output=True, text=True, timeout=120, cwd=REPO)
        if check and result.returncode != 0:
            raise AssertionError(f"trackstream {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
        return result

    def sql(self, query: str) -> list[list[Any]]:
        return self.reader.sql(query)["rows"]

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def make_server(kafka_bootstrap: str, home: Path, name: str, partitions: int = 4) -> ServerHandle:
    """Settings isolated by name: own topic, consumer group, data dir and port."""
    home.mkdir(parents=True, exist_ok=True)
    external = os.environ.get("TRACKSTREAM_TEST_CLICKHOUSE")
    settings = Settings(
        home=home, kafka_bootstrap=kafka_bootstrap,
        clickhouse_dsn=external or f"chdb://{home / 'clickhouse'}",
        database=f"ts_{name}", topic=f"events.{name}", dead_letter_topic=f"events.{name}.dlq",
        partitions=partitions, server_port=free_port(), consumer_group=f"materializer-{name}",
    )
    return ServerHandle(settings, home / "server-test.log")


STAGING_GRACE_S = 3  # the short grace period of the `short_grace_server` fixture (tests/integration/conftest.py)


@contextlib.contextmanager
def running_server(bootstrap: str, home: Path, prefix: str, **env: str) -> Iterator[ServerHandle]:
    """A started server with its own topic / database named ``prefix`` + a random suffix and the extra
    environment ``env``; stopped after."""
    handle = make_server(bootstrap, home, f"{prefix}{uuid.uuid4().hex[:6]}")
    handle.env_overrides.update(env)
    handle.start()
    try:
        yield handle
    finally:
        handle.stop()


@contextlib.contextmanager
def mlflow_tracking_server(bootstrap: str, home: Path, prefix: str) -> Iterator[ServerHandle]:
    """``running_server`` with the mlflow client pointed at it (``MLFLOW_TRACKING_URI`` and
    ``mlflow.set_tracking_uri``); the previous URI is restored after."""
    import mlflow

    previous = os.environ.get("MLFLOW_TRACKING_URI")
    with running_server(bootstrap, home, prefix) as handle:
        os.environ["MLFLOW_TRACKING_URI"] = handle.settings.server_url
        mlflow.set_tracking_uri(handle.settings.server_url)
        try:
            yield handle
        finally:
            if previous is None:
                os.environ.pop("MLFLOW_TRACKING_URI", None)
            else:
                os.environ["MLFLOW_TRACKING_URI"] = previous


def mlflow_call(base_url: str, path: str, body: dict | None = None) -> dict:
    """One MLflow REST call (POST with a JSON body, else GET); an HTTP error raises."""
    import json
    import urllib.request

    request = urllib.request.Request(
        f"{base_url}/api/2.0/mlflow/{path}", data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"}, method="POST" if body is not None else "GET")
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def mlflow_refusal(base_url: str, path: str, body: dict) -> tuple[int, str]:
    """(HTTP status, MLflow error code) of a call expected to fail; (200, "") when it succeeded."""
    import json
    import urllib.error

    try:
        mlflow_call(base_url, path, body)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()).get("error_code", "")
    return 200, ""
