"""A worker or gateway started while the ClickHouse server restarts waits for it (consumers/store.py)."""

from __future__ import annotations

import pytest

from trackstream.consumers.store import connect_patiently
from trackstream.errors import StorageError


class FlakyServer:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[tuple[str, str]] = []

    def connect(self, dsn: str, purpose: str) -> str:
        self.calls.append((dsn, purpose))
        if len(self.calls) <= self.failures:
            raise StorageError(f"cannot open ClickHouse at {dsn}: connection refused")
        return "client"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_a_server_that_comes_back_is_waited_for_with_growing_pauses():
    server, clock = FlakyServer(failures=4), Clock()
    client = connect_patiently("http://h:8123", 60, "migrate", server.connect, clock.sleep, lambda: clock.now)
    assert client == "client"
    assert server.calls == [("http://h:8123", "migrate")] * 5
    assert clock.sleeps == [0.5, 1.0, 2.0, 4.0]


def test_the_wait_is_bounded_and_the_last_error_names_the_server():
    server, clock = FlakyServer(failures=1000), Clock()
    with pytest.raises(StorageError, match="cannot open ClickHouse at http://h:8123"):
        connect_patiently("http://h:8123", 20, "write", server.connect, clock.sleep, lambda: clock.now)
    assert sum(clock.sleeps) <= 20 and max(clock.sleeps) == 5.0


def test_the_embedded_engine_is_not_waited_for():
    server, clock = FlakyServer(failures=1), Clock()
    with pytest.raises(StorageError):
        connect_patiently("chdb:///tmp/x", 60, "write", server.connect, clock.sleep, lambda: clock.now)
    assert clock.sleeps == []


def test_a_server_that_goes_away_after_the_connection_is_waited_for_too():
    """The ClickHouse server stopped between a worker's connect and its migrations (CI saw it)."""
    from clickhouse_connect.driver.exceptions import OperationalError

    from trackstream.consumers.store import patiently

    attempts, clock = [], Clock()

    def migrate() -> int:
        attempts.append(clock.now)
        if len(attempts) < 3:
            raise OperationalError("HTTPConnectionPool(host='127.0.0.1', port=8123): connection refused")
        return 11

    assert patiently(migrate, "http://h:8123", 60, "migrating", clock.sleep, lambda: clock.now) == 11
    assert clock.sleeps == [0.5, 1.0]


def test_a_bug_is_not_retried():
    from trackstream.consumers.store import patiently

    clock = Clock()
    with pytest.raises(KeyError):
        patiently(lambda: {}["missing"], "http://h:8123", 60, "migrating", clock.sleep, lambda: clock.now)
    assert clock.sleeps == []
