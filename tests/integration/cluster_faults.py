"""Ingest into the session's local cluster while something fails, then check every event was
materialized exactly once and the consumer group caught up."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable

import clickhouse_connect
import numpy as np
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from trackstream.config import Settings
from trackstream.producer.kafka_writer import EventWriter
from trackstream.schemas import MetricBatch
from tests.integration.harness import wait_until


@dataclass
class Ingest:
    """Runs of metric batches produced by a background thread (acks=all, idempotent producer)."""

    settings: Settings
    spool_dir: object
    runs: int = 4
    batches_per_run: int = 40
    points_per_batch: int = 2000
    run_ids: list[str] = field(default_factory=list)
    expected: dict = field(default_factory=dict)
    error: BaseException | None = None

    def start(self) -> "Ingest":
        self.run_ids = [uuid.uuid4().hex for _ in range(self.runs)]
        self._thread = threading.Thread(target=self._produce, daemon=True)
        self._thread.start()
        return self

    def _produce(self) -> None:
        try:
            writer = EventWriter(self.settings.kafka_bootstrap, self.settings.topic,
                                 writer_id=f"fault-{uuid.uuid4().hex[:8]}", spool_dir=self.spool_dir)
            rng = np.random.default_rng(7)
            expected = {"points": 0, "value_sum": 0.0, "params": 0}
            for run_id in self.run_ids:
                writer.append("run_created", {"run_id": run_id, "experiment_id": "0", "user_id": "fault",
                                              "source_name": "t", "parent_run_id": None, "start_time_ms": 1,
                                              "run_name": run_id[:6], "tags": []})
                writer.append("params_set", {"run_id": run_id, "params": [{"key": f"p{i}", "value": str(i)}
                                                                          for i in range(5)]})
                expected["params"] += 5
            n = self.points_per_batch
            for b in range(self.batches_per_run):
                for run_id in self.run_ids:
                    values = rng.standard_normal(n)
                    batch = MetricBatch(["loss", "acc"], (np.arange(n) % 2).astype(np.uint32),
                                        np.arange(b * n, (b + 1) * n), np.full(n, 1_700_000_000_000 + b), values)
                    writer.append("metrics_logged", {"run_id": run_id, **batch.to_record_fields()})
                    expected["points"] += n
                    expected["value_sum"] += float(values.sum())
                time.sleep(0.05)  # spread over a few seconds, so faults land mid-ingest
            assert writer.flush(120) == 0
            writer.close()
            self.expected = expected
        except BaseException as exc:  # reported by join()
            self.error = exc

    def join(self, timeout: float = 180) -> dict:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the producer did not finish"
        if self.error is not None:
            raise self.error
        return self.expected


def stored(settings: Settings, run_ids: list[str]) -> dict:
    client = clickhouse_connect.get_client(dsn=settings.clickhouse_dsn)
    db = settings.database
    ids = {"ids": run_ids}
    (points, distinct_points, value_sum), = client.query(
        f"SELECT count(), uniqExact(run_id, key, step), sum(value) FROM {db}.metrics WHERE run_id IN {{ids:Array(String)}}",
        parameters=ids).result_rows
    (params, distinct_params), = client.query(
        f"SELECT count(), uniqExact(run_id, key) FROM {db}.params WHERE run_id IN {{ids:Array(String)}}",
        parameters=ids).result_rows
    return {"points": points, "distinct_points": distinct_points, "value_sum": value_sum, "params": params,
            "distinct_params": distinct_params}


def consumer_lag(settings: Settings) -> int:
    """Events in the topic past the consumer group's committed offsets."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    from confluent_kafka import ConsumerGroupTopicPartitions

    partitions = [TopicPartition(settings.topic, p) for p in range(settings.partitions)]
    (future,) = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(settings.consumer_group, partitions)]).values()
    committed = {tp.partition: tp.offset for tp in future.result(10).topic_partitions}
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"lag-{uuid.uuid4().hex[:6]}"})
    try:
        ends = {p: consumer.get_watermark_offsets(TopicPartition(settings.topic, p), timeout=10)[1]
                for p in range(settings.partitions)}
    finally:
        consumer.close()
    return sum(end - max(committed.get(p, 0), 0) for p, end in ends.items())


def assert_exactly_once(settings: Settings, ingest: Ingest, workers_alive: Callable[[], bool],
                        timeout: float = 240) -> None:
    expected = ingest.join()

    deadline = time.monotonic() + timeout
    while stored(settings, ingest.run_ids)["points"] < expected["points"]:
        assert workers_alive(), "a worker process exited (see its worker.log)"
        assert time.monotonic() < deadline, f"not every point was materialized within {timeout} s"
        time.sleep(1.0)
    wait_until(lambda: consumer_lag(settings) == 0, 60, "the consumer group's lag to return to 0", interval=1.0)
    counts = stored(settings, ingest.run_ids)
    assert counts["points"] == counts["distinct_points"] == expected["points"], counts  # 0 lost, 0 duplicated
    assert counts["params"] == counts["distinct_params"] == expected["params"], counts
    assert abs(counts["value_sum"] - expected["value_sum"]) < 1e-6 * max(1.0, abs(expected["value_sum"]))
