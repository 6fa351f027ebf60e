"""Replay: rebuild every table from the beginning of the log, then prove it equals the live state.

The replay reads the topic with its own consumer (assigned partitions, no group offsets), up to
the high watermarks seen when it starts, through the same Materializer and ClickHouseSink as
the live worker, into another database. ``until_ms`` keeps only messages whose Kafka timestamp
is at or before that moment: the state as it was then.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable

from clickhouse_connect.driver.client import Client
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from trackstream.consumers.materializer import TABLE_COLUMNS, Materializer, SourceMessage
from trackstream.consumers.store import MODEL_TABLES, ClickHouseSink, ClickHouseStateReader, SchemaManager, check_database_name
from trackstream.config import Settings
from trackstream.errors import InvalidInput, ServiceUnavailable

POLL_BATCH = 5000
IGNORED_COLUMNS = {"events": ("ingested_at",), "rejects": ("received_at",)}
COMPARED_TABLES = ("experiments", "runs", "params", "metrics", "tags", "artifacts", "dataset_inputs", "rejects",
                   "events", *MODEL_TABLES)
METRIC_COLUMNS = ("run_id", "key", "step", "timestamp_ms", "value", "src_partition", "src_offset")


@dataclass
class ReplayProgress:
    total_events: int
    events: int = 0
    metric_points: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed(self) -> float:
        return max(time.monotonic() - self.started, 1e-9)

    def as_dict(self) -> dict[str, float]:
        return {"events": self.events, "total_events": self.total_events, "metric_points": self.metric_points,
                "events_per_s": round(self.events / self.elapsed, 1),
                "points_per_s": round(self.metric_points / self.elapsed, 1),
                "lag": self.total_events - self.events, "elapsed_s": round(self.elapsed, 2)}


@dataclass(frozen=True)
class TableDiff:
    table: str
    live_rows: int
    replay_rows: int
    live_checksum: int
    replay_checksum: int
    examples: tuple[str, ...] = ()

    @property
    def equal(self) -> bool:
        return self.live_rows == self.replay_rows and self.live_checksum == self.replay_checksum


@dataclass
class ReplayReport:
    database: str
    high_watermarks: dict[int, int]
    progress: dict[str, float]
    until_ms: int | None
    diffs: list[TableDiff] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return all(d.equal for d in self.diffs)


def default_replay_database(live: str) -> str:
    return f"{live}_replay_{time.strftime('%Y%m%d_%H%M%S')}"


class ReplayJob:
    def __init__(self, settings: Settings, client: Client, target_database: str, until_ms: int | None = None,
                 replace: bool = False) -> None:
        self.settings = settings
        self.client = client
        self.target = check_database_name(target_database)
        if self.target == settings.database:
            raise InvalidInput(f"refusing to replay into the live database {self.target!r}; name another one")
        self.until_ms = until_ms
        self.replace = replace
        self.progress = ReplayProgress(total_events=0)

    def prepare_target(self) -> None:
        exists = int(self.client.command("SELECT count() FROM system.databases WHERE name = {d:String}",
                                         parameters={"d": self.target}))
        if exists:
            if not self.replace:
                raise InvalidInput(f"database {self.target!r} already exists; pass --replace to rebuild it")
            self.client.command(f"DROP DATABASE {self.target} SYNC")
        SchemaManager(self.client, self.target).migrate()

    def run(self, on_progress: Callable[[ReplayProgress], None] | None = None, compare: bool = True) -> ReplayReport:
        self.prepare_target()
        consumer = Consumer({**self.settings.kafka_config(), "group.id": f"replay-{uuid.uuid4().hex}",
                             "enable.auto.commit": False, "enable.partition.eof": False,
                             "fetch.max.bytes": 64 * 1024 * 1024, "max.partition.fetch.bytes": 16 * 1024 * 1024})
        try:
            watermarks = self._high_watermarks(consumer)
            self.progress = ReplayProgress(total_events=sum(watermarks.values()))
            self._consume(consumer, watermarks, on_progress)
        finally:
            consumer.close()
        report = ReplayReport(self.target, watermarks, self.progress.as_dict(), self.until_ms)
        if compare and self.until_ms is None:
            report.diffs = compare_databases(self.client, self.settings.database, self.target, watermarks)
        return report

    def _high_watermarks(self, consumer: Consumer) -> dict[int, int]:
        try:
            metadata = consumer.list_topics(self.settings.topic, timeout=15)
        except Exception as exc:
            raise ServiceUnavailable(f"Kafka at {self.settings.kafka_bootstrap} does not answer: {exc}") from exc
        topic = metadata.topics.get(self.settings.topic)
        if topic is None or topic.error is not None:
            raise InvalidInput(f"topic {self.settings.topic!r} does not exist on {self.settings.kafka_bootstrap}")
        marks = {}
        for partition in sorted(topic.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(self.settings.topic, partition), timeout=15)
            marks[partition] = high
        return marks

    def _consume(self, consumer: Consumer, watermarks: dict[int, int],
                 on_progress: Callable[[ReplayProgress], None] | None) -> None:
        remaining = {p: hw for p, hw in watermarks.items() if hw > 0}
        consumer.assign([TopicPartition(self.settings.topic, p, OFFSET_BEGINNING) for p in remaining])
        materializer = Materializer(ClickHouseStateReader(self.client, self.target),
                                    artifact_root=self.settings.artifact_uri_root)
        sink = ClickHouseSink(self.client, self.target)
        while remaining:
            batch: list[SourceMessage] = []
            for msg in consumer.consume(POLL_BATCH, timeout=1.0):
                if msg.error():
                    continue
                partition, offset = msg.partition(), msg.offset()
                if partition not in remaining or offset >= remaining[partition]:
                    continue
                if offset == remaining[partition] - 1:
                    del remaining[partition]
                self.progress.events += 1
                timestamp_ms = msg.timestamp()[1]
                if self.until_ms is not None and timestamp_ms > self.until_ms:
                    continue
                batch.append(SourceMessage(partition, offset, msg.value(), msg.key(), timestamp_ms))
            if batch:
                rows = materializer.process(batch)
                sink.write(rows)
                self.progress.metric_points += rows.metric_points
            if on_progress:
                on_progress(self.progress)


def _range_filter(watermarks: dict[int, int]) -> str:
    parts = list(watermarks)
    marks = [watermarks[p] for p in parts]
    return f"src_offset < transform(src_partition, {parts}, {marks}, toUInt64(0))"


def _compared_columns(table: str) -> list[str]:
    if table == "metrics":
        return list(METRIC_COLUMNS)
    return [c for c in TABLE_COLUMNS[table] if c not in IGNORED_COLUMNS.get(table, ())]


def compare_databases(client: Client, live: str, replay: str, watermarks: dict[int, int]) -> list[TableDiff]:
    """Row count and an order-independent checksum per table, over the replayed part of the log."""
    where = _range_filter(watermarks) if watermarks else "1"
    diffs = []
    for table in COMPARED_TABLES:
        cols = ", ".join(_compared_columns(table))
        stats = {}
        for db in (live, replay):
            (count, checksum), = client.query(
                f"SELECT count(), coalesce(sum(cityHash64({cols})), 0) FROM {db}.{table} WHERE {where}").result_rows
            stats[db] = (int(count), int(checksum))
        examples: tuple[str, ...] = ()
        if stats[live] != stats[replay]:
            rows = client.query(
                f"SELECT 'only live' AS side, {cols} FROM (SELECT {cols} FROM {live}.{table} WHERE {where} "
                f"EXCEPT SELECT {cols} FROM {replay}.{table}) UNION ALL "
                f"SELECT 'only replay', {cols} FROM (SELECT {cols} FROM {replay}.{table} WHERE {where} "
                f"EXCEPT SELECT {cols} FROM {live}.{table}) LIMIT 5").result_rows
            examples = tuple(str(r)[:300] for r in rows)
        (live_rows, live_sum), (replay_rows, replay_sum) = stats[live], stats[replay]
        diffs.append(TableDiff(table, live_rows, replay_rows, live_sum, replay_sum, examples))
    return diffs


def report_as_dict(report: ReplayReport) -> dict:
    return {"database": report.database, "until_ms": report.until_ms, "equal": report.equal if report.diffs else None,
            "high_watermarks": {str(p): o for p, o in report.high_watermarks.items()}, "progress": report.progress,
            "tables": [{"table": d.table, "live_rows": d.live_rows, "replay_rows": d.replay_rows,
                        "equal": d.equal, "examples": list(d.examples)} for d in report.diffs]}


class BackgroundReplay:
    """One replay at a time inside a long-running process (the server owns the embedded engine)."""

    def __init__(self, settings: Settings, client_factory: Callable[[], Client]) -> None:
        self.settings = settings
        self._client_factory = client_factory
        self._job: ReplayJob | None = None
        self._state = "idle"
        self._result: dict | None = None
        self._error: str | None = None
        self._lock = threading.Lock()

    def start(self, target_database: str | None, until_ms: int | None, replace: bool) -> dict:
        with self._lock:
            if self._state == "running":
                raise InvalidInput("a replay is already running; wait for it (GET /api/ts/replay)")
            job = ReplayJob(self.settings, self._client_factory(),
                            target_database or default_replay_database(self.settings.database), until_ms, replace)
            job.prepare_target()
            job.replace = True  # prepared above; run() rebuilds the now-empty database
            self._job, self._state, self._result, self._error = job, "running", None, None
        threading.Thread(target=self._run, name="trackstream-replay", daemon=True).start()
        return self.status()

    def _run(self) -> None:
        assert self._job is not None
        try:
            self._result = report_as_dict(self._job.run())
            self._state = "done"
        except Exception as exc:  # reported to the caller through status()
            self._error = f"{type(exc).__name__}: {exc}"
            self._state = "failed"

    def status(self) -> dict:
        job = self._job
        return {"state": self._state, "database": job.target if job else None,
                "progress": job.progress.as_dict() if job else None, "report": self._result, "error": self._error}
