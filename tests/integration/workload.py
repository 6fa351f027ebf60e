"""A reproducible workload of runs, params, tags, artifacts and 1,000,000 metric points."""

from __future__ import annotations

import uuid

import numpy as np

from trackstream.producer.kafka_writer import EventWriter
from trackstream.schemas import MetricBatch
from tests.integration.harness import ServerHandle

RUNS = 8
BATCHES_PER_RUN = 25
POINTS_PER_BATCH = 5_000  # 8 x 25 x 5000 = 1,000,000 points


def produce_workload(settings, seed: int = 1) -> dict:
    """Produce the workload and return what the tables must hold."""
    rng = np.random.default_rng(seed)
    writer = EventWriter(settings.kafka_bootstrap, settings.topic, writer_id=f"load-{uuid.uuid4().hex[:8]}")
    expected = {"points": 0, "value_sum": 0.0, "step_sum": 0, "params": 0, "tags": 0, "artifacts": 0, "events": 0}
    run_ids = [uuid.uuid4().hex for _ in range(RUNS)]
    for run_id in run_ids:
        writer.append("run_created", {"run_id": run_id, "experiment_id": "0", "user_id": "load", "source_name": "t",
                                      "parent_run_id": None, "start_time_ms": 1, "run_name": run_id[:6], "tags": []})
        writer.append("params_set", {"run_id": run_id, "params": [{"key": f"p{i}", "value": str(i)} for i in range(10)]})
        expected["params"] += 10
        expected["events"] += 2
    for b in range(BATCHES_PER_RUN):
        for run_id in run_ids:
            n = POINTS_PER_BATCH
            values = rng.standard_normal(n)
            steps = np.arange(b * n, (b + 1) * n)
            batch = MetricBatch(["loss", "acc"], (np.arange(n) % 2).astype(np.uint32), steps,
                                np.full(n, 1_700_000_000_000 + b), values)
            writer.append("metrics_logged", {"run_id": run_id, **batch.to_record_fields()})
            expected["points"] += n
            expected["value_sum"] += float(values.sum())
            expected["step_sum"] += int(steps.sum())
            expected["events"] += 1
            if b % 5 == 0:
                writer.append("tags_set", {"run_id": run_id, "tags": [{"key": f"t{b}", "value": "x"}]})
                writer.append("artifact_committed", {"run_id": run_id, "path": f"ckpt/{b}.pt", "size": b,
                                                     "sha256": "0" * 64, "uri": f"file:///ckpt/{b}.pt"})
                expected["tags"] += 1
                expected["artifacts"] += 1
                expected["events"] += 2
    assert writer.flush(120) == 0
    writer.close()
    return expected


def table_counts(server: ServerHandle) -> dict:
    db = server.settings.database
    (points, value_sum, step_sum), = server.sql(f"SELECT count(), sum(value), sum(step) FROM {db}.metrics")
    count = lambda table: server.sql(f"SELECT count() FROM {db}.{table}")[0][0]  # noqa: E731
    # the server itself appends experiment events (the Default experiment) to the log
    (events, distinct_events), = server.sql(
        f"SELECT count(), uniqExactIf(event_id, event_type NOT LIKE 'experiment%') FROM {db}.events")
    return {"points": points, "value_sum": value_sum, "step_sum": step_sum, "params": count("params"),
            "tags": count("tags"), "artifacts": count("artifacts"), "events": distinct_events,
            "log_messages": events}


def log_size(settings) -> int:
    """Messages in the topic: the producer may have re-sent some after a delivery timeout."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": "log-size"})
    try:
        partitions = consumer.list_topics(settings.topic, timeout=10).topics[settings.topic].partitions
        return sum(consumer.get_watermark_offsets(TopicPartition(settings.topic, p), timeout=10)[1]
                   for p in partitions)
    finally:
        consumer.close()
