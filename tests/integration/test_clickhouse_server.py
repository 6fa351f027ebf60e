"""The chdb-core ClickHouse server: a separate process that several clients share over HTTP and
TCP, stopped by its pid only, and restarted with its data intact."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import clickhouse_connect
import pytest

from trackstream.infra.clickhouse_server import ClickHouseServer
from trackstream.infra.kafka_broker import InfraError
from trackstream.infra.processes import pid_alive
from tests.integration.harness import free_port

WRITER = """
import sys, clickhouse_connect
client = clickhouse_connect.get_client(dsn=sys.argv[1])
client.insert("srv.points", [[int(sys.argv[2]), i] for i in range(1000)], column_names=["writer", "i"])
"""


@pytest.fixture
def server(tmp_path):
    server = ClickHouseServer(tmp_path, http_port=free_port(), tcp_port=free_port())
    yield server
    server.stop()


def test_starts_detached_serves_several_writer_processes_and_keeps_data_across_restart(server):
    status = server.start()
    assert status.running and status.answering and pid_alive(status.pid)
    assert os.getsid(status.pid) != os.getsid(0)  # its own session: outlives the starter
    assert server.start().pid == status.pid  # idempotent while it runs
    client = clickhouse_connect.get_client(dsn=server.dsn)
    assert client.query("SELECT version()").result_rows[0][0].startswith("26.")
    client.command("CREATE DATABASE IF NOT EXISTS srv")
    client.command("CREATE TABLE srv.points (writer UInt8, i UInt32, tags Map(LowCardinality(String), String)) "
                   "ENGINE = ReplacingMergeTree ORDER BY (writer, i)")
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, server.dsn, str(n)]) for n in range(3)]
    assert [w.wait(60) for w in writers] == [0, 0, 0]
    with socket.create_connection(("127.0.0.1", server.tcp_port), timeout=5):
        pass  # the native TCP listener is up too

    assert server.stop() is True
    assert not pid_alive(status.pid)
    assert not server.pid_path.exists()
    assert server.status().running is False
    assert server.stop() is False  # nothing of ours runs: nothing is signalled

    restarted = server.start()
    assert restarted.pid != status.pid
    client = clickhouse_connect.get_client(dsn=server.dsn)
    assert client.query("SELECT writer, count() FROM srv.points GROUP BY writer ORDER BY writer").result_rows == [
        (0, 1000), (1, 1000), (2, 1000)]


def test_stop_never_signals_a_process_it_did_not_start(server):
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        server.server_dir.mkdir(parents=True)
        server.pid_path.write_text(f"{stranger.pid}\n")
        assert server.stop() is False
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_a_port_held_by_another_process_is_reported(server):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", server.http_port))
        holder.listen()
        with pytest.raises(InfraError, match=f"HTTP port {server.http_port}"):
            server.start()
