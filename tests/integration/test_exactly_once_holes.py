"""Exactly-once holes of issue 11, each pinned by a test that failed before its fix."""

from __future__ import annotations

import dataclasses
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import clickhouse_connect
import pytest
from urllib.parse import urlparse

from trackstream.consumers import store
from trackstream.consumers.materializer import Materializer
from trackstream.consumers.schema_lock import LOCK_TABLE, migration_lock
from trackstream.consumers.store import ClickHouseSink, ClickHouseStateReader, SchemaManager, connect
from tests.integration.cutting_proxy import CuttingProxy
from trackstream.errors import StorageError
from tests.unit.consumers.events import EventLog


class Killed(Exception):
    """Stands for a SIGKILL: the sink's memory is gone, what ClickHouse acknowledged stays."""


class DiesOnInsert:
    """A client that dies on its ``n``-th metrics insert (counting from 1), after the earlier ones landed."""

    def __init__(self, client, n: int) -> None:
        self._client = client
        self._remaining = n

    def __getattr__(self, name):
        return getattr(self._client, name)

    def insert_arrow(self, table, arrow_table, **kwargs):
        self._remaining -= 1
        if self._remaining == 0:
            raise Killed(table)
        return self._client.insert_arrow(table, arrow_table, **kwargs)


def two_partition_batch(events_per_partition: int, points: int) -> list:
    """Runs on partitions 0 and 1 logging metrics; delivered partition after partition, so the
    batch's offsets go 0..n on partition 0 and then start again at 0 on partition 1."""
    messages = []
    for partition in (0, 1):
        log = EventLog(partition=partition)
        log.run_created(f"r{partition}")
        for _ in range(events_per_partition):
            log.metrics(f"r{partition}", points)
        messages += log.messages
    return messages


def test_a_kill_between_inserts_of_a_batch_spanning_partitions_loses_no_point(db, monkeypatch):
    client, database = db
    monkeypatch.setattr(store, "MAX_ROWS_PER_INSERT", 250)  # several inserts per batch
    messages = two_partition_batch(events_per_partition=4, points=100)
    rows = Materializer(ClickHouseStateReader(client, database)).process(messages)

    for dies_at in (2, 2, 2):  # each restart gets one insert further, then dies again
        with pytest.raises(Exception):
            ClickHouseSink(DiesOnInsert(client, dies_at), database).write(rows)
    # The restarted worker: marks reloaded from ClickHouse, the whole batch re-delivered.
    rows = Materializer(ClickHouseStateReader(client, database)).process(messages)
    ClickHouseSink(client, database).write(rows)

    per_event = client.query(f"SELECT src_partition, src_offset, count() FROM {database}.metrics "
                             f"GROUP BY src_partition, src_offset ORDER BY src_partition, src_offset").result_rows
    assert per_event == [(p, o, 100) for p in (0, 1) for o in range(1, 5)]


# Hole 5: migrations idempotent, and run once when two workers start together.

def migrated_to(client, database: str, version: int) -> SchemaManager:
    manager = SchemaManager(client, database)
    manager.migrations = [m for m in manager.migrations if m.version <= version]
    manager.migrate()
    return SchemaManager(client, database)


def at_version_2_with_1000_points(client, database: str) -> None:
    migrated_to(client, database, 2)
    client.command(f"INSERT INTO {database}.metrics (run_id, key, step, timestamp_ms, value, src_partition, "
                   f"src_offset) SELECT 'r', 'loss', number, number, number, 0, 1 FROM numbers(1000)")


def rollup_points(client, database: str) -> int:
    return int(client.command(f"SELECT sum(points) FROM {database}.metric_rollups"))


def test_a_migration_that_ran_but_was_not_recorded_runs_again_without_double_counting(clickhouse_dsn, unique_name):
    client = connect(clickhouse_dsn)
    try:
        at_version_2_with_1000_points(client, unique_name)
        manager = SchemaManager(client, unique_name)
        backfill = next(m for m in manager.migrations if m.version == 3)
        for statement in backfill.statements:  # applied, then the worker died before recording it
            client.command(statement.replace("{db}", unique_name))
        manager.migrate()
        assert rollup_points(client, unique_name) == 1000
    finally:
        client.command(f"DROP DATABASE IF EXISTS {unique_name}")


def test_two_workers_starting_together_apply_each_migration_once(clickhouse_dsn, unique_name):
    """The first worker is held inside a migration; the second must wait for it, not apply too."""
    client = connect(clickhouse_dsn)
    try:
        at_version_2_with_1000_points(client, unique_name)
        first, second = SchemaManager(client, unique_name), SchemaManager(connect(clickhouse_dsn, "second"), unique_name)
        inside, release = threading.Event(), threading.Event()
        apply = first.apply

        def held_apply(migration):
            inside.set()
            assert release.wait(30)
            apply(migration)

        first.apply = held_apply
        with ThreadPoolExecutor(2) as pool:
            first_done = pool.submit(first.migrate)
            assert inside.wait(30)
            second_done = pool.submit(second.migrate)
            time.sleep(1.0)
            applied_meanwhile = int(client.command(f"SELECT count() FROM {unique_name}.schema_migrations"))
            release.set()
            first_done.result(60), second_done.result(60)
        assert applied_meanwhile == 2  # the second worker waited
        versions = client.query(f"SELECT version, count() FROM {unique_name}.schema_migrations GROUP BY version "
                                f"ORDER BY version").result_rows
        assert versions == [(m.version, 1) for m in first.migrations]
        assert rollup_points(client, unique_name) == 1000
    finally:
        client.command(f"DROP DATABASE IF EXISTS {unique_name}")


def test_a_migration_lock_left_by_a_dead_worker_is_taken_over_once_stale(db):
    client, database = db
    client.command(f"CREATE TABLE {database}.{LOCK_TABLE} (holder String) ENGINE = MergeTree ORDER BY tuple()")
    time.sleep(2.1)
    with migration_lock(client, database, stale_after_s=1):
        holders = client.query(f"SELECT holder FROM {database}.{LOCK_TABLE}").result_rows
    assert len(holders) == 1
    assert not client.command(f"EXISTS TABLE {database}.{LOCK_TABLE}")


# Hole 6: recovery reads in proportion to the runs of the batch, not to the log.

class RecordingQueries:
    """Passes everything through; remembers each query's SQL and parameters."""

    def __init__(self, client) -> None:
        self._client = client
        self.queries: list[tuple[str, dict]] = []

    def __getattr__(self, name):
        return getattr(self._client, name)

    def query(self, sql, parameters=None, **kwargs):
        self.queries.append((sql, parameters))
        return self._client.query(sql, parameters=parameters, **kwargs)


def estimated_rows_read(client, sql: str, parameters) -> int:
    """What ClickHouse's index analysis (projections included) says the query reads."""
    return sum(row[3] for row in client.query(f"EXPLAIN ESTIMATE {sql}", parameters=parameters).result_rows)


def test_recovery_reads_rows_in_proportion_to_the_batch_not_the_log(db):
    client, database = db
    runs, granule = 500, 8192
    client.command(f"INSERT INTO {database}.metrics (run_id, key, step, timestamp_ms, value, src_partition, "
                   f"src_offset) SELECT concat('run-', toString(number % {runs})), 'loss', number, number, number, "
                   f"number % 2, intDiv(number, 1000) FROM numbers(1000000)")
    client.command(f"INSERT INTO {database}.events (src_partition, src_offset, event_type, schema_version, event_id, "
                   f"aggregate_id, writer_id, seq, timestamp_ms, payload) SELECT 0, number, 'metrics_logged', 1, "
                   f"toString(number), concat('run-', toString(number % {runs})), 'w', intDiv(number, {runs}) + 1, "
                   f"number, '' FROM numbers(100000)")
    message = EventLog(partition=0).metrics("run-7", 10, seq=201)
    batch = [dataclasses.replace(message, offset=100_000)]

    recording = RecordingQueries(client)
    ClickHouseSink(recording, database)  # a restarted worker reloads its marks...
    Materializer(ClickHouseStateReader(recording, database)).process(batch)  # ...and the batch's state
    assert len(recording.queries) > len(store.IDEMPOTENT_TABLES)
    costs = [(sql, estimated_rows_read(client, sql, params)) for sql, params in recording.queries]
    assert [(sql, rows) for sql, rows in costs if rows > 4 * granule] == []


def test_a_migration_numbered_below_the_latest_applied_still_runs(db):
    """Numbers are reserved per change, so 006 may be merged after 010 was applied."""
    client, database = db
    client.command(f"DROP TABLE {database}.dataset_inputs")
    client.command(f"DELETE FROM {database}.schema_migrations WHERE version = 4")
    SchemaManager(client, database).migrate()
    assert client.command(f"EXISTS TABLE {database}.dataset_inputs")


# Hole 3: an HTTP insert cut mid-body must leave nothing that the retry cannot complete exactly.

SMALL_SERVER_BLOCKS = {"max_insert_block_size": 1000, "min_insert_block_size_rows": 1000,
                       "min_insert_block_size_bytes": 1_000_000}
"""A server whose inserts form a part every 1,000 rows (as any insert does past about 1M rows)."""


def cut_insert_then_retry(dsn: str, database: str, table: str, log: EventLog, **cut) -> list[tuple]:
    """Write the log's batch through a proxy that cuts the first insert into ``table``, then
    write it again directly (the worker's retry, marks reloaded); rows per event afterwards."""
    direct = clickhouse_connect.get_client(dsn=dsn)
    upstream = urlparse(dsn)
    proxy = CuttingProxy((upstream.hostname, upstream.port), markers=(b"INSERT", table.encode()), **cut)
    try:
        rows = Materializer(ClickHouseStateReader(direct, database)).process(log.messages)
        proxied = clickhouse_connect.get_client(dsn=f"http://default:@127.0.0.1:{proxy.port}",
                                                settings=SMALL_SERVER_BLOCKS)
        try:  # the driver may retry the request itself, or give up
            ClickHouseSink(proxied, database).write(rows)
        except StorageError:
            pass
        assert proxy.cuts == 1
        rows = Materializer(ClickHouseStateReader(direct, database)).process(log.messages)
        ClickHouseSink(direct, database).write(rows)
        return direct.query(f"SELECT src_offset, count() FROM {database}.{table} GROUP BY src_offset "
                            f"ORDER BY src_offset").result_rows
    finally:
        proxy.close()


@pytest.fixture
def server_db(clickhouse_server_dsn, unique_name):
    client = clickhouse_connect.get_client(dsn=clickhouse_server_dsn)
    SchemaManager(client, unique_name).migrate()
    yield clickhouse_server_dsn, unique_name
    client.command(f"DROP DATABASE IF EXISTS {unique_name}")


def params_log(events: int, params_per_event: int) -> EventLog:
    log = EventLog()
    log.run_created("r1")
    for e in range(events):  # random values: clickhouse-connect compresses what it sends
        log.add("params_set", run_id="r1",
                params=[{"key": f"e{e}k{i}", "value": secrets.token_hex(500)} for i in range(params_per_event)])
    return log


def metrics_log(events: int, points: int) -> EventLog:
    log = EventLog()
    log.run_created("r1")
    for _ in range(events):
        log.metrics("r1", points)
    return log


def test_a_params_insert_cut_mid_body_is_completed_exactly_by_the_retry(server_db):
    dsn, database = server_db
    per_event = cut_insert_then_retry(dsn, database, "params", params_log(24, 499), cut_after=5_000_000)
    assert per_event == [(o, 499) for o in range(1, 25)]


def test_a_metrics_insert_cut_mid_body_is_completed_exactly_by_the_retry(server_db):
    dsn, database = server_db
    per_event = cut_insert_then_retry(dsn, database, "metrics", metrics_log(24, 20_000), cut_after=1_000_000)
    assert per_event == [(o, 20_000) for o in range(1, 25)]


def test_an_insert_stored_whose_response_was_cut_is_not_stored_twice(server_db):
    """clickhouse-connect sends the request again on a dropped connection: without a
    deduplication token the server would store it twice."""
    dsn, database = server_db
    per_event = cut_insert_then_retry(dsn, database, "params", params_log(4, 50), cut_after=0, cut_response=True)
    assert per_event == [(o, 50) for o in range(1, 5)]
