"""ClickHouseSink and SchemaManager against the real ClickHouse engine."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from trackstream.consumers.materializer import Materializer
from trackstream.consumers.store import ClickHouseSink, ClickHouseStateReader, SchemaManager
from tests.integration.harness import REPO
from tests.unit.consumers.events import EventLog
from trackstream.errors import StorageError


def materialize(client, database, messages):
    rows = Materializer(ClickHouseStateReader(client, database)).process(messages)
    return ClickHouseSink(client, database).write(rows)


def count(client, database, table):
    return client.command(f"SELECT count() FROM {database}.{table}")


def test_migrations_are_versioned_and_idempotent(db):
    client, database = db
    manager = SchemaManager(client, database)
    assert manager.current_version() == manager.known_version
    assert manager.migrate() == manager.known_version
    assert count(client, database, "schema_migrations") == len(manager.migrations)


def test_worker_refuses_a_database_written_by_a_newer_schema(db):
    client, database = db
    client.command(f"INSERT INTO {database}.schema_migrations (version, name) VALUES (99, '099_future')")
    known = SchemaManager(client, database).known_version
    with pytest.raises(StorageError, match=f"schema version 99.*knows versions up to {known}"):
        SchemaManager(client, database).migrate()


def test_writing_the_same_batch_twice_adds_nothing(db):
    client, database = db
    log = EventLog()
    log.run_created("r1")
    log.add("params_set", run_id="r1", params=[{"key": "lr", "value": "1"}])
    log.metrics("r1", 1000)
    first = materialize(client, database, log.messages)
    second = materialize(client, database, log.messages)
    assert first["metrics"] == 1000 and first["params"] == 1
    assert not any(second.values())
    assert count(client, database, "metrics") == 1000 and count(client, database, "events") == 3


def test_reprocessing_after_a_partial_write_decides_as_the_first_time(db):
    """Crash after the runs table got a batch but before params did: the run is deleted later in
    the same batch, yet re-processing must still accept the params logged before the delete."""
    client, database = db
    log = EventLog()
    log.run_created("r1")
    log.add("params_set", run_id="r1", params=[{"key": "lr", "value": "1"}])
    log.add("run_deleted", run_id="r1")
    rows = Materializer(ClickHouseStateReader(client, database)).process(log.messages)
    sink = ClickHouseSink(client, database)
    sink._write_rows("runs", rows.rows["runs"])  # the crash: only one table was written
    again = materialize(client, database, log.messages)
    assert again.get("runs", 0) == 0
    assert client.query(f"SELECT key, value FROM {database}.params").result_rows == [("lr", "1")]
    assert count(client, database, "rejects") == 0
    assert client.command(f"SELECT lifecycle_stage FROM {database}.runs_latest") == "deleted"


def test_latest_metric_follows_mlflow_order(db):
    client, database = db
    log = EventLog()
    log.run_created("r1")
    log.metrics("r1", 5)
    materialize(client, database, log.messages)
    (latest,), = client.query(f"SELECT max(latest) FROM {database}.latest_metrics WHERE run_id = 'r1'").result_rows
    assert latest == (4, 1004, 2.0)


OPEN_ENGINE = textwrap.dedent("""
    import sys, time
    from trackstream.consumers.store import connect
    from trackstream.errors import StorageError
    try:
        connect(sys.argv[1]).query("SELECT 1")
    except StorageError as exc:
        print(exc, flush=True)
        sys.exit(3)
    print("opened", flush=True)
    if sys.argv[2:] == ["hold"]:
        time.sleep(60)
""")


def test_an_embedded_engine_in_use_by_another_process_is_refused_with_who_owns_it(tmp_path):
    dsn = f"chdb://{tmp_path / 'clickhouse'}"
    owner = subprocess.Popen([sys.executable, "-c", OPEN_ENGINE, dsn, "hold"], cwd=REPO,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout.readline().strip() == "opened"
        second = subprocess.run([sys.executable, "-c", OPEN_ENGINE, dsn], cwd=REPO,
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 3, second.stdout + second.stderr
        assert f"the embedded ClickHouse at {dsn} is in use by another process" in second.stdout
        assert "trackstream down" in second.stdout
    finally:
        owner.kill()
        owner.wait()


def test_a_request_retry_in_a_later_batch_is_dropped_from_the_stored_state(db):
    """The retry arrives after the worker restarted: its run's latest writer comes back from the events."""
    client, database = db
    log = EventLog()
    log.run_created("r1")
    log.add("params_set", run_id="r1", params=[{"key": "lr", "value": "1"}], seq=1, writer_id="req-a")
    log.metrics("r1", 10, seq=2, writer_id="req-a")
    materialize(client, database, log.messages)
    first_batch = len(log.messages)
    log.metrics("r1", 10, seq=2, writer_id="req-a")  # the retry: dropped
    log.add("tags_set", run_id="r1", tags=[{"key": "t", "value": "x"}], seq=1, writer_id="req-b")
    log.metrics("r1", 10, seq=2, writer_id="req-a")  # after another write: applied
    written = materialize(client, database, log.messages[first_batch:])
    assert written["metrics"] == 10
    assert count(client, database, "metrics") == 20
