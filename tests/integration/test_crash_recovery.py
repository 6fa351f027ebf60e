"""Exactly-once materialization under SIGKILL: the worker is killed repeatedly during a large
ingest — including right after a ClickHouse insert, before the offsets could be committed — and
the tables must still hold every produced point, param, tag and artifact exactly once."""

from __future__ import annotations

import random
import time
import uuid

import numpy as np
import pytest

from infra.topics import ensure_topics
from producer.kafka_writer import EventWriter
from schemas import MetricBatch
from tests.integration.harness import ServerHandle, make_server, wait_until

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
    return {"points": points, "value_sum": value_sum, "step_sum": step_sum, "params": count("params"),
            "tags": count("tags"), "artifacts": count("artifacts"), "events": count("events")}


def test_sigkill_during_large_ingest_loses_and_duplicates_nothing(kafka_bootstrap, tmp_path):
    server = make_server(kafka_bootstrap, tmp_path, f"kill{uuid.uuid4().hex[:6]}")
    ensure_topics(server.settings)
    expected = produce_workload(server.settings)

    # Killed right after a ClickHouse insert, before the batch's offsets could be committed.
    for crash_after in (1, 2):
        server.env_overrides = {"TRACKSTREAM_FAULT_KILL_AFTER_BATCH": str(crash_after)}
        server.start(wait=False)
        server.process.wait(120)
        assert server.process.returncode == -9, server.log_tail()
    server.env_overrides = {}
    server.start()
    status = wait_until(lambda: (st := server.reader.status())["batches"] >= 1 and st, 120, "a first batch")
    assert status["rows_already_stored"] > 0  # the re-delivered batch was recognised, not re-inserted
    server.kill()
    # Then killed wherever random timing lands.
    rng = random.Random(42)
    for _ in range(3):
        server.start()
        time.sleep(rng.uniform(0.5, 3.0))
        server.kill()
    server.start()
    try:
        def caught_up():
            counts = table_counts(server)
            return counts if counts["events"] >= expected["events"] and counts["points"] >= expected["points"] else None

        wait_until(caught_up, 300, "the restarted worker to catch up", interval=1.0)
        time.sleep(2)  # anything still in flight would show up as a duplicate now
        counts = table_counts(server)
        status = server.reader.status()
    finally:
        server.stop()

    assert counts["points"] == expected["points"]
    assert counts["value_sum"] == pytest.approx(expected["value_sum"], rel=1e-9, abs=1e-6)
    assert counts["step_sum"] == expected["step_sum"]
    for table in ("params", "tags", "artifacts", "events"):
        assert counts[table] == expected[table], table
    assert status["rejects"] == 0
