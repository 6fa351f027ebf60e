"""Exactly-once materialization under SIGKILL: the worker is killed repeatedly during a large
ingest — including right after a ClickHouse insert, before the offsets could be committed — and
the tables must still hold every produced point, param, tag and artifact exactly once."""

from __future__ import annotations

import random
import time
import uuid

import pytest

from trackstream.infra.topics import ensure_topics
from tests.integration.harness import make_server, wait_until
from tests.integration.workload import log_size, produce_workload, table_counts


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
    assert counts["log_messages"] == log_size(server.settings)  # the audit table mirrors the log exactly
    assert status["rejects"] == 0
