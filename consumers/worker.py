"""The faust-streaming worker: consume the event log in batches, materialize, then ack.

Discipline (as in quix-streams' sinks): a batch is decoded and decided in memory, written to
ClickHouse, and only after ClickHouse acknowledged the inserts are the batch's events acked,
so faust commits their offsets. A crash in between re-delivers the batch; ClickHouseSink drops
what it already holds, so queries never see a row twice.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import faust

from trackstream.consumers.batching import FlushRequests, take_batches
from trackstream.consumers.ingest_stats import IngestStats
from trackstream.consumers.finalizer import FinalizeDeadline, decidable_partitions, finalize_timeout_event, overdue_runs
from trackstream.consumers.materializer import BatchChanges, Materializer, RejectReason, SourceMessage, TableRows
from trackstream.consumers.positions import PositionLog
from trackstream.consumers.store import (CLICKHOUSE_FAILURES, ClickHouseSink, ClickHouseStateReader, SchemaManager,
                                         connect_patiently, patiently)
from trackstream.config import Settings
from trackstream.consumers.committed_artifacts import latest_committed_sha256
from trackstream.producer.staging_gc import collect_staging, gc_interval_s, settle_versions, staging_stores

log = logging.getLogger("trackstream.worker")

BATCH_MAX_EVENTS = 2000
CHUNK_MAX_BYTES = 16 * 1024 * 1024  # one materialize+insert step; bounds memory per step
SESSION_TIMEOUT_S = 10.0  # a SIGKILLed worker's partitions move after this long
MAX_RETRY_BACKOFF_S = 10.0
STARTUP_WAIT_S = 120.0  # a ClickHouse server that does not answer at startup is waited for this long
EXIT_UNACKED_BATCH = 70  # EX_SOFTWARE


def split_by_size(messages: list[SourceMessage], max_bytes: int = CHUNK_MAX_BYTES) -> list[list[SourceMessage]]:
    """Consecutive chunks of at most ``max_bytes`` of payload (a larger single message stands alone)."""
    chunks: list[list[SourceMessage]] = []
    current: list[SourceMessage] = []
    size = 0
    for msg in messages:
        msg_size = len(msg.value or b"")
        if current and size + msg_size > max_bytes:
            chunks.append(current)
            current, size = [], 0
        current.append(msg)
        size += msg_size
    if current:
        chunks.append(current)
    return chunks


class MaterializerService:
    """Everything one worker needs around the pure Materializer; all ClickHouse calls run on one thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse")
        self.stats = IngestStats()
        # Called on the event loop after each batch is stored: (last offset per partition, what it changed).
        self.on_materialized: Callable[[dict[int, int], BatchChanges], None] | None = None
        # Set by the gateway so that a read waiting for its writes ends the batch window early.
        self.flush_requests: FlushRequests | None = None
        # Fault injection for the crash tests: SIGKILL ourselves after the Nth batch is inserted
        # and before its offsets can be committed.
        self._crash_after_insert = int(os.environ.get("TRACKSTREAM_FAULT_KILL_AFTER_BATCH", "0"))
        self.client = self.executor.submit(connect_patiently, settings.clickhouse_dsn, STARTUP_WAIT_S).result()

        def prepare_storage() -> ClickHouseSink:
            SchemaManager(self.client, settings.database).migrate()
            return ClickHouseSink(self.client, settings.database)  # reads the high-water marks

        self.sink = self.executor.submit(patiently, prepare_storage, settings.clickhouse_dsn, STARTUP_WAIT_S,
                                         "preparing ClickHouse").result()
        # Only a ClickHouse server has gateways in other processes to tell; the embedded engine
        # belongs to this process, whose gateway hears of each batch through on_materialized.
        self.positions = None if settings.clickhouse_dsn.startswith("chdb://") else \
            PositionLog(self.client, settings.database)
        self.materializer = Materializer(ClickHouseStateReader(self.client, settings.database),
                                         artifact_root=settings.artifact_uri_root)
        self._state_stale = False

    def stored_positions(self) -> dict[int, int]:
        """The highest offset per partition already stored (an applied event is in ``events``, a
        refused one in ``rejects``)."""
        partitions = range(self.settings.partitions)
        stored = {p: max(self.sink.high_water_mark("events", p), self.sink.high_water_mark("rejects", p))
                  for p in partitions}
        return {p: o for p, o in stored.items() if o >= 0}

    async def on_clickhouse(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def handle_batch(self, messages: list[SourceMessage]) -> tuple[TableRows, BatchChanges, dict[int, int]]:
        """Materialize and store one chunk; returns its rows, what it changed and its last offset per partition."""
        rows = self.materializer.process(messages)
        started = time.perf_counter()
        self.sink.write(rows)
        last: dict[int, int] = {}
        for m in messages:
            last[m.partition] = max(m.offset, last.get(m.partition, -1))
        # After the rows: gateways in other processes advance their marks from this (consumers/positions.py).
        changes = rows.changes()
        if self.positions is not None:
            self.positions.record(last, changes)
        self.stats.record_batch(len(messages), rows.metric_points, rows.counts.get("rejects", 0),
                                rows.counts.get("duplicates", 0), time.perf_counter() - started, last)
        self.stats.rows_already_stored = self.sink.rows_already_stored
        if self._crash_after_insert and self.stats.batches >= self._crash_after_insert:
            os.kill(os.getpid(), signal.SIGKILL)
        return rows, changes, last

    async def write_batch(self, messages: list[SourceMessage]) -> tuple[list[tuple], BatchChanges, dict[int, int]]:
        """Materialize one batch, retrying for as long as ClickHouse fails (the log keeps the
        events; nothing is acked meanwhile). A retry first reloads the marks and forgets cached
        state, so state is rebuilt as of the batch start; that recovery is retried too.
        Returns the batch's rejects, what it changed and its last offset per partition.

        Whatever escapes here makes faust ack the batch (``take_events`` acks in a ``finally``),
        so nothing may: a ClickHouse failure is waited out, and any other error (a bug) ends the
        process at once, before an ack, so the batch is delivered again after the restart."""
        backoff = 0.5
        while True:
            try:
                await self.on_clickhouse(self.reset_if_stale)
                rejects: list[tuple] = []
                changes = BatchChanges()
                last: dict[int, int] = {}
                for chunk in split_by_size(messages):
                    rows, chunk_changes, chunk_last = await self.on_clickhouse(self.handle_batch, chunk)
                    rejects.extend(rows.rows.get("rejects", ()))
                    changes |= chunk_changes
                    last.update(chunk_last)  # chunks are in offset order: a later chunk's offsets are higher
                return rejects, changes, last
            except CLICKHOUSE_FAILURES as exc:
                self._state_stale = True
                self.stats.storage_errors += 1
                log.error("ClickHouse failed, retrying the batch in %.1f s: %s", backoff, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_RETRY_BACKOFF_S)
            except BaseException:  # a bug, or cancelled by shutdown: faust would ack the batch next
                log.critical("materializing a batch failed or was cancelled; exiting before its events can be "
                             "acked", exc_info=True)
                os._exit(EXIT_UNACKED_BATCH)

    def mark_stale(self) -> None:
        """Marks and cached state must be reloaded before the next batch (partitions moved)."""
        self._state_stale = True

    def reset_if_stale(self) -> None:
        if self._state_stale:
            self.reset_after_rebalance()

    def reset_after_rebalance(self) -> None:
        self.materializer.forget()
        self.sink.reload_high_water_marks()
        self._state_stale = False


def build_app(settings: Settings, service: MaterializerService,
              extra_startup: Callable[[], Any] | None = None) -> faust.App:
    datadir = settings.home / "faust" / settings.consumer_group  # faust defaults to "<app id>-data" in the cwd
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.consumer_group,
        broker=f"kafka://{settings.kafka_bootstrap}",
        broker_credentials=settings.kafka_security.faust_credentials(),
        value_serializer="raw",
        key_serializer="raw",
        web_enabled=False,
        datadir=str(datadir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        broker_session_timeout=SESSION_TIMEOUT_S,
        broker_heartbeat_interval=SESSION_TIMEOUT_S / 4,
        stream_buffer_maxsize=8192,
        producer_acks=-1,
    )
    topic = app.topic(settings.topic, key_type=bytes, value_type=bytes, partitions=settings.partitions)
    dead_letters = app.topic(settings.dead_letter_topic, key_type=bytes, value_type=bytes,
                             partitions=settings.partitions)

    @app.agent(topic)
    async def materialize(stream: faust.StreamT) -> None:
        async for events in take_batches(stream, BATCH_MAX_EVENTS, settings.batch_window_s, service.flush_requests):
            messages = [SourceMessage(e.message.partition, e.message.offset, e.message.value, e.message.key,
                                      int(e.message.timestamp * 1000)) for e in events]
            rejects, changes, last = await service.write_batch(messages)
            if service.on_materialized is not None:
                service.on_materialized(last, changes)
            for reject in rejects:
                partition, offset, reason, detail = reject[:4]
                if reason == RejectReason.SEQUENCE_GAP:  # recorded, but the event was applied
                    continue
                original = next(m for m in messages if m.partition == partition and m.offset == offset)
                await dead_letters.send(
                    key=original.key, value=original.value or b"",
                    headers={"reason": reason.encode(), "detail": detail[:1000].encode(),
                             "source": f"{settings.topic}/{partition}/{offset}".encode()},
                )

    @app.timer(interval=2.0)
    async def track_highwaters() -> None:
        for tp in app.consumer.assignment():
            if tp.topic == settings.topic:
                hw = app.consumer.highwater(tp)
                if hw is not None:
                    service.stats.highwaters[tp.partition] = hw

    @app.on_partitions_assigned.connect
    async def on_assigned(sender: Any, assigned: Any = None, **kwargs: Any) -> None:
        service.mark_stale()  # reloaded before the next batch, where a ClickHouse failure is retried

    deadline = FinalizeDeadline(settings.finalize_timeout_s)

    @app.timer(interval=max(min(settings.finalize_timeout_s / 4, 30.0), 0.5))
    async def fail_overdue_runs() -> None:
        now_ms = int(time.time() * 1000)
        try:
            # marks may have moved on (another worker, before a rebalance) on a partition quiet since
            await service.on_clickhouse(service.reset_if_stale)
            owned = [tp for tp in app.consumer.assignment() if tp.topic == settings.topic]
            log_ends = {tp.partition: hw for tp in owned if (hw := app.consumer.highwater(tp)) is not None}
            decidable = decidable_partitions({tp.partition for tp in owned}, service.stored_positions(), log_ends)
            if not decidable:
                return
            overdue = await service.on_clickhouse(overdue_runs, service.client, settings.database, now_ms,
                                                  deadline.timeout_ms)
        except CLICKHOUSE_FAILURES as exc:
            log.warning("finalize deadline check skipped, ClickHouse failed: %s", exc)
            return
        for run in deadline.due(overdue, decidable):
            key, value = finalize_timeout_event(run.run_id, now_ms)
            await topic.send(key=key, value=value)
            log.warning("run %s did not get artifacts %s within %.0f s of finishing; marked FAILED",
                        run.run_id, run.missing, settings.finalize_timeout_s)

    stores = staging_stores(settings)

    def committed_sha256(key: str) -> str | None:  # on a worker thread: ask the ClickHouse thread
        return service.executor.submit(latest_committed_sha256, service.client, settings.database, key).result()

    def collect() -> None:
        collected = collect_staging(stores, settings.staging_grace_s)
        if collected.removed or collected.errors:
            log.warning("removed %d abandoned staging upload(s), %d bytes; could not remove %s",
                        len(collected.removed), collected.bytes_freed, collected.errors or "none")
        settle_versions(stores, settings.staging_grace_s, committed_sha256)

    @app.timer(interval=gc_interval_s(settings.staging_grace_s))
    async def collect_abandoned_uploads() -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(None, collect)
        except Exception:  # a store that is unreachable now is tried again next time
            log.warning("could not collect abandoned uploads", exc_info=True)

    if extra_startup is not None:
        app.task(extra_startup)
    return app


