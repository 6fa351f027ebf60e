"""ClickHouse I/O for the materializer: connection, migrations, idempotent writes, state reads.

One module owns the clickhouse-connect calls that write; the same DDL and SQL serve the
embedded engine (``chdb:///path``) and a server (``http://host:8123``).
"""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import logging
import re
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

import clickhouse_connect
import numpy as np
import pyarrow as pa
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from trackstream.consumers.materializer import TABLE_COLUMNS, AggregateState, TableRows
from trackstream.consumers.model_state import ModelState
from trackstream.consumers.run_state import RunState
from trackstream.consumers.schema_lock import migration_lock
from trackstream.config import redact_secrets
from trackstream.errors import StorageError
from trackstream.schemas.envelope import REQUEST_WRITER_PREFIX

T = TypeVar("T")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
MODEL_TABLES = ("logged_models", "logged_model_params", "logged_model_tags", "logged_model_metrics",
                "logged_model_artifacts", "run_model_links")
IDEMPOTENT_TABLES = ("experiments", "runs", "params", "tags", "artifacts", "dataset_inputs", "rejects", "metrics",
                     "events", *MODEL_TABLES)
MAX_ROWS_PER_INSERT = 500_000
TRAILING_EVENTS = 64  # of an aggregate, read to restore its latest writer (ClickHouseStateReader)
_DATABASE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")

_clients: dict[tuple[str, str], Client] = {}
_clients_lock = threading.Lock()


def connect(dsn: str, purpose: str = "write") -> Client:
    """A client for the DSN, one per purpose and process.

    Readers get their own client: with the embedded engine a ``readonly`` setting used for user
    SQL sticks to the client's session and would make the writer's inserts fail.
    """
    with _clients_lock:
        client = _clients.get((dsn, purpose))
        if client is None:
            try:
                client = clickhouse_connect.get_client(dsn=dsn)
            except Exception as exc:
                if _held_by_another_process(dsn):  # an embedded engine: a path, no password
                    raise StorageError(
                        f"the embedded ClickHouse at {dsn} is in use by another process, which owns it: "
                        "if a trackstream server runs on this TRACKSTREAM_HOME, read through it "
                        "(the CLI does so when it finds <home>/server.json) or stop it with `trackstream down`"
                    ) from exc
                # Not chained to ``exc``: the driver's error may quote the DSN, password and all.
                raise StorageError(redact_secrets(f"cannot open ClickHouse at {dsn}: {exc}", dsn)) from None
            _clients[(dsn, purpose)] = client
        return client


# What a ClickHouse outage raises: our wrapped errors, the driver's errors, socket errors.
CLICKHOUSE_FAILURES = (StorageError, ClickHouseError, OSError)


def patiently(step: Callable[[], T], dsn: str, wait_s: float, what: str,
              sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> T:
    """``step()``, retried with backoff for up to ``wait_s`` while a ClickHouse *server* fails: a
    worker or gateway started while the server restarts waits for it instead of exiting, whether
    the server goes away before the connection or between it and the migrations. The embedded
    engine is never waited for (its failures are not transient)."""
    deadline = clock() + wait_s
    delay = 0.5
    while True:
        try:
            return step()
        except CLICKHOUSE_FAILURES as exc:
            if dsn.startswith("chdb://") or clock() + delay > deadline:
                raise
            logging.getLogger(__name__).warning("%s: %s; retrying in %.1f s", what, exc, delay)
            sleep(delay)
            delay = min(delay * 2, 5.0)


def connect_patiently(dsn: str, wait_s: float, purpose: str = "write",
                      connect_fn: Callable[[str, str], Client] | None = None,
                      sleep: Callable[[float], None] = time.sleep,
                      clock: Callable[[], float] = time.monotonic) -> Client:
    """``connect``, waited for as ``patiently`` says."""
    connect_fn = connect_fn or connect
    return patiently(lambda: connect_fn(dsn, purpose), dsn, wait_s, f"connecting to ClickHouse ({purpose})",
                     sleep, clock)


def _held_by_another_process(dsn: str) -> bool:
    """Whether an embedded engine's data directory is locked by another process.

    The engine holds an exclusive ``flock`` on ``<path>/status`` while it runs; chdb prints that
    to stderr and raises only a generic initialisation error, so the lock is probed directly.
    """
    if not dsn.startswith("chdb://"):
        return False
    status = Path(dsn.removeprefix("chdb://").split("?", 1)[0]) / "status"
    try:
        with open(status, "rb") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
    except OSError:
        return False
    return False


def check_database_name(database: str) -> str:
    if not _DATABASE_NAME.match(database):
        raise StorageError(f"invalid database name {database!r}: use letters, digits and underscores")
    return database


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    migrations = []
    for path in sorted(directory.glob("[0-9][0-9][0-9]_*.sql")):
        text = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("--"))
        statements = tuple(s.strip() for s in text.split(";") if s.strip())
        migrations.append(Migration(int(path.name[:3]), path.stem, statements))
    return migrations


class SchemaManager:
    """Versioned migrations; refuses a database written by a newer trackstream.

    Pending migrations run under a lock in ClickHouse (:func:`migration_lock`), so of several
    workers starting together one applies them and the others wait; each migration is also
    idempotent (``IF NOT EXISTS``, backfills that rebuild), so one that ran but was not recorded
    (a crash in between) runs again harmlessly."""

    def __init__(self, client: Client, database: str) -> None:
        self.client = client
        self.database = check_database_name(database)
        self.migrations = load_migrations()

    @property
    def known_version(self) -> int:
        return max(m.version for m in self.migrations)

    def current_version(self) -> int:
        exists = self.client.command(
            "SELECT count() FROM system.tables WHERE database = {db:String} AND name = 'schema_migrations'",
            parameters={"db": self.database},
        )
        if not int(exists):
            return 0
        return int(self.client.command(f"SELECT max(version) FROM {self.database}.schema_migrations"))

    def migrate(self) -> int:
        self.client.command(f"CREATE DATABASE IF NOT EXISTS {self.database}")
        self.client.command(
            f"CREATE TABLE IF NOT EXISTS {self.database}.schema_migrations "
            "(version UInt32, name String, applied_at DateTime DEFAULT now()) ENGINE = MergeTree ORDER BY version"
        )
        self._checked_version()
        if not self._pending():
            return self.known_version
        with migration_lock(self.client, self.database):
            for migration in self._pending():  # another worker may have applied some meanwhile
                self.apply(migration)
        return self.known_version

    def _pending(self) -> list[Migration]:
        """Migrations not recorded yet, by version: numbers are reserved per change, so one merged
        later may carry a lower number than one already applied."""
        applied = {int(v) for (v,) in self.client.query(
            f"SELECT DISTINCT version FROM {self.database}.schema_migrations").result_rows}
        return [m for m in self.migrations if m.version not in applied]

    def _checked_version(self) -> int:
        current = self.current_version()
        if current > self.known_version:
            raise StorageError(
                f"database {self.database!r} is at schema version {current}, but this trackstream knows versions "
                f"up to {self.known_version}; upgrade trackstream or point it at another database"
            )
        return current

    def apply(self, migration: Migration) -> None:
        for statement in migration.statements:
            self.client.command(statement.replace("{db}", self.database))
        self.client.insert(f"{self.database}.schema_migrations", [[migration.version, migration.name]],
                           column_names=["version", "name"])


# metrics first (their own columnar path), runs last: a run's status is the visible "commit"; a
# model's status row likewise comes after its files, params, tags and metrics.
WRITE_ORDER = ("experiments", "params", "tags", "artifacts", "dataset_inputs", "logged_model_params",
               "logged_model_tags", "logged_model_metrics", "logged_model_artifacts", "run_model_links", "rejects",
               "events", "logged_models", "runs")


class ClickHouseSink:
    """Writes a batch's rows exactly once.

    Every row carries the (partition, offset) of its event. Per table and partition the sink
    knows the highest offset already stored and drops rows at or below it, so a batch that is
    written again after a crash (inserted, offsets not yet committed) adds nothing twice. Each
    insert is one block of whole events, so a table holds all of an event's rows or none.

    Tables are written in ``WRITE_ORDER``: the runs table last, so a reader that sees a run's
    new status (say FINISHED) also sees every param, tag, metric and artifact logged before it.
    """

    def __init__(self, client: Client, database: str) -> None:
        self.client = client
        self.database = check_database_name(database)
        self._hwm: dict[str, dict[int, int]] = {}
        self.rows_already_stored = 0
        self.reload_high_water_marks()

    def reload_high_water_marks(self) -> None:
        """All tables' marks, or (if ClickHouse fails midway) the previous ones untouched."""
        marks = {}
        for table in IDEMPOTENT_TABLES:
            result = self.client.query(
                f"SELECT src_partition, max(src_offset) FROM {self.database}.{table} GROUP BY src_partition"
            )
            marks[table] = {int(p): int(o) for p, o in result.result_rows}
        self._hwm = marks

    def high_water_mark(self, table: str, partition: int) -> int:
        return self._hwm[table].get(partition, -1)

    def write(self, rows: TableRows) -> dict[str, int]:
        written: dict[str, int] = defaultdict(int)
        metrics = rows.metrics_table()
        if metrics is not None:
            written["metrics"] = self._write_metrics(metrics)
        for table in WRITE_ORDER:
            table_rows = rows.rows.get(table)
            if table_rows:
                written[table] = self._write_rows(table, table_rows)
        return dict(written)

    def _fresh(self, table: str, partition: int, offset: int) -> bool:
        return offset > self._hwm[table].get(partition, -1)

    def _advance(self, table: str, partitions: Any, offsets: Any) -> None:
        marks = self._hwm[table]
        for p, o in zip(partitions, offsets):
            if o > marks.get(p, -1):
                marks[p] = o

    def _write_rows(self, table: str, table_rows: list[tuple]) -> int:
        columns = TABLE_COLUMNS[table]
        ip, io = columns.index("src_partition"), columns.index("src_offset")
        fresh = [r for r in table_rows if self._fresh(table, r[ip], r[io])]
        self.rows_already_stored += len(table_rows) - len(fresh)
        if not fresh:
            return 0
        last: dict[int, int] = {}
        for r in fresh:
            last[r[ip]] = max(last.get(r[ip], -1), r[io])
        settings = insert_settings(table, [r[ip] for r in fresh], [r[io] for r in fresh])
        self._insert(lambda: self.client.insert(f"{self.database}.{table}", fresh, column_names=list(columns),
                                                settings=settings), table)
        self._advance(table, last.keys(), last.values())
        return len(fresh)

    def _write_metrics(self, table: pa.Table) -> int:
        partitions = table.column("src_partition").to_numpy()
        offsets = table.column("src_offset").to_numpy()
        keep = np.ones(len(offsets), dtype=bool)
        for p, mark in self._hwm["metrics"].items():
            keep &= ~((partitions == p) & (offsets <= mark))
        self.rows_already_stored += int(len(keep) - keep.sum())
        if not keep.any():
            return 0
        if not keep.all():
            table = table.filter(pa.array(keep))
            partitions, offsets = partitions[keep], offsets[keep]
        order = np.lexsort((offsets, partitions))  # by partition, then offset: one event's rows adjacent
        if not (order[1:] > order[:-1]).all():
            table, partitions, offsets = table.take(pa.array(order)), partitions[order], offsets[order]
        for start, stop in insert_slices(partitions, offsets, MAX_ROWS_PER_INSERT):
            chunk = table.slice(start, stop - start)
            settings = insert_settings("metrics", partitions[start:stop], offsets[start:stop])
            self._insert(lambda c=chunk, s=settings: self.client.insert_arrow(f"{self.database}.metrics", c, settings=s),
                         "metrics")
            self._advance("metrics", *_last_offsets(partitions[start:stop], offsets[start:stop]))
        return int(keep.sum())

    @staticmethod
    def _insert(do_insert: Any, table: str) -> None:
        try:
            do_insert()
        except Exception as exc:
            raise StorageError(redact_secrets(f"insert into {table} failed: {exc}")) from exc


# One insert is one block, hence one part, whatever the server's defaults: stored whole or not at
# all (ClickHouse otherwise forms a part per ~1M rows or 256 MB, keeping a prefix of a cut insert).
# Our inserts are bounded well below these (MAX_ROWS_PER_INSERT rows, the worker's CHUNK_MAX_BYTES).
SINGLE_BLOCK_INSERT = {"max_insert_block_size": 100_000_000, "min_insert_block_size_rows": 100_000_000,
                       "min_insert_block_size_bytes": 1 << 34}


def insert_settings(table: str, partitions: Any, offsets: Any) -> dict[str, Any]:
    """Settings of one insert: a single block, and a deduplication token naming its content.

    The token is the table and the (partition, offset) span of every event in the insert (rows'
    partitions and offsets as arrays: a span per partition, computed without a per-row loop). When
    the connection drops after the server stored the insert, the driver (or the worker) sends it
    again with the same token, and the server drops the copy (``non_replicated_deduplication_window``,
    migration 010). Another insert with the same token would hold the same events' rows, which
    are then already stored."""
    partitions, offsets = np.asarray(partitions, dtype=np.int64), np.asarray(offsets, dtype=np.int64)
    spans = []
    for partition in np.unique(partitions):
        of_partition = offsets[partitions == partition]
        spans.append(f"{int(partition)}:{int(of_partition.min())}-{int(of_partition.max())}")
    token = hashlib.sha256(f"{table}|{','.join(spans)}|{len(offsets)}".encode()).hexdigest()
    return {**SINGLE_BLOCK_INSERT, "insert_deduplicate": 1, "insert_deduplication_token": token}


def insert_slices(partitions: np.ndarray, offsets: np.ndarray, max_rows: int) -> list[tuple[int, int]]:
    """[start, stop) row ranges of at most ``max_rows`` rows over rows sorted by (partition, offset)
    that never cut one event's rows apart (an event larger than ``max_rows`` is one range of its own).

    After a kill between two inserts, the reloaded high-water mark is the last event stored, so a
    stored event must be stored whole."""
    n = len(offsets)
    if n == 0:
        return []
    changes = (partitions[1:] != partitions[:-1]) | (offsets[1:] != offsets[:-1])
    event_starts = np.concatenate(([0], np.flatnonzero(changes) + 1, [n]))
    slices = []
    start = 0
    while start < n:
        if n - start <= max_rows:
            stop = n
        else:  # the last event start within reach, or, if one event alone is larger, that event's end
            stop = int(event_starts[np.searchsorted(event_starts, start + max_rows, side="right") - 1])
            if stop <= start:
                stop = int(event_starts[np.searchsorted(event_starts, start, side="right")])
        slices.append((start, stop))
        start = stop
    return slices


def _last_offsets(partitions: np.ndarray, offsets: np.ndarray) -> tuple[list[int], list[int]]:
    result: dict[int, int] = {}
    for p in np.unique(partitions):
        result[int(p)] = int(offsets[partitions == p].max())
    return list(result), list(result.values())


class ClickHouseStateReader:
    """Aggregate state as of an offset, read back from the materialized rows."""

    def __init__(self, client: Client, database: str) -> None:
        self.client = client
        self.db = check_database_name(database)

    def load(self, before: Mapping[int, int], aggregates: Mapping[str, str]) -> dict[str, AggregateState]:
        """One query per table the aggregates' kinds need, over all the batch's partitions at once."""
        where = "(" + " OR ".join(f"(src_partition = {int(p)} AND src_offset < {int(o)})"
                                  for p, o in sorted(before.items())) + ")"
        by_kind: dict[str, list[str]] = defaultdict(list)
        for agg, kind in aggregates.items():
            by_kind[kind].append(agg)
        states: dict[str, AggregateState] = defaultdict(AggregateState)
        if by_kind["run"]:
            self._load_runs(states, {"ids": by_kind["run"]}, where)
        if by_kind["experiment"]:
            for row in self._rows(
                f"SELECT experiment_id, name, artifact_location, lifecycle_stage, creation_time, last_update_time, tags "
                f"FROM {self.db}.experiments WHERE experiment_id IN {{ids:Array(String)}} AND {where} "
                f"ORDER BY src_offset DESC LIMIT 1 BY experiment_id", {"ids": by_kind["experiment"]}):
                keys = ("experiment_id", "name", "artifact_location", "lifecycle_stage", "creation_time",
                        "last_update_time", "tags")
                states[row[0]].experiment = dict(zip(keys, row))
        if by_kind["model"]:
            self._load_models(states, {"ids": by_kind["model"]}, where)
        params = {"ids": list(aggregates)}
        for agg, writer, seq in self._rows(
            f"SELECT aggregate_id, writer_id, max(seq) FROM {self.db}.events "
            f"WHERE aggregate_id IN {{ids:Array(String)}} AND {where} AND NOT startsWith(writer_id, '{REQUEST_WRITER_PREFIX}') "
            f"GROUP BY aggregate_id, writer_id", params):
            states[agg].writer_seqs[writer] = int(seq)
        self._load_last_writers(states, params, where)
        return dict(states)

    def _load_runs(self, states: dict[str, AggregateState], params: dict[str, Any], where: str) -> None:
        committed: dict[str, frozenset[str]] = {}
        for run_id, paths in self._rows(
            f"SELECT run_id, groupUniqArray(path) FROM {self.db}.artifacts "
            f"WHERE run_id IN {{ids:Array(String)}} AND {where} GROUP BY run_id", params):
            committed[run_id] = frozenset(paths)
        for row in self._rows(
            f"SELECT run_id, experiment_id, run_name, user_id, source_name, parent_run_id, status, start_time, "
            f"end_time, lifecycle_stage, artifact_uri, missing_artifacts FROM {self.db}.runs "
            f"WHERE run_id IN {{ids:Array(String)}} AND {where} ORDER BY src_offset DESC LIMIT 1 BY run_id", params):
            states[row[0]].run = RunState(*row[:11], missing_artifacts=tuple(row[11]),
                                          committed_artifacts=committed.get(row[0], frozenset()))
        for run_id, key, value in self._rows(
            f"SELECT run_id, key, value FROM {self.db}.params WHERE run_id IN {{ids:Array(String)}} AND {where}",
            params):
            states[run_id].params[key] = value
        for run_id, name, digest in self._rows(
            f"SELECT run_id, name, digest FROM {self.db}.dataset_inputs WHERE run_id IN {{ids:Array(String)}} "
            f"AND {where}", params):
            states[run_id].datasets.add((name, digest))

    def _load_last_writers(self, states: dict[str, AggregateState], params: dict[str, Any], where: str) -> None:
        """Each aggregate's latest writer and the highest seq of its trailing events by that writer, as the
        materializer tracks them (``trailing_seq``). A request appends a handful of events per aggregate,
        so the latest ``TRAILING_EVENTS`` events hold every trailing one that matters."""
        latest: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for agg, writer, seq in self._rows(
            f"SELECT aggregate_id, writer_id, seq FROM {self.db}.events WHERE aggregate_id IN {{ids:Array(String)}} "
            f"AND {where} ORDER BY src_offset DESC LIMIT {TRAILING_EVENTS} BY aggregate_id "
            # reading the table in its (src_partition, src_offset) order would win over the
            # by_aggregate projection (migration 010) and scan the partition's whole log
            f"SETTINGS optimize_read_in_order = 0", params):
            latest[agg].append((writer, int(seq)))
        for agg, events in latest.items():
            writer = events[0][0]
            trailing = itertools.takewhile(lambda e: e[0] == writer, events)
            states[agg].last_writer, states[agg].last_writer_seq = writer, max(seq for _, seq in trailing)

    def _load_models(self, states: dict[str, AggregateState], params: dict[str, Any], where: str) -> None:
        committed: dict[str, frozenset[str]] = {}
        for model_id, paths in self._rows(
            f"SELECT model_id, groupUniqArray(path) FROM {self.db}.logged_model_artifacts "
            f"WHERE model_id IN {{ids:Array(String)}} AND {where} GROUP BY model_id", params):
            committed[model_id] = frozenset(paths)
        for row in self._rows(
            f"SELECT model_id, experiment_id, name, model_type, source_run_id, artifact_location, status, "
            f"status_message, lifecycle_stage, creation_timestamp_ms, last_updated_timestamp_ms "
            f"FROM {self.db}.logged_models WHERE model_id IN {{ids:Array(String)}} AND {where} "
            f"ORDER BY src_offset DESC LIMIT 1 BY model_id", params):
            states[row[0]].model = ModelState(*row, committed_artifacts=committed.get(row[0], frozenset()))
        for model_id, key, value in self._rows(
            f"SELECT model_id, key, value FROM {self.db}.logged_model_params "
            f"WHERE model_id IN {{ids:Array(String)}} AND {where}", params):
            states[model_id].params[key] = value

    def _rows(self, sql: str, params: dict[str, Any]) -> list[tuple]:
        return self.client.query(sql, parameters=params).result_rows
