"""Several workers in one consumer group share the partitions; one joining and one dying
rebalance without loss or duplicates. Needs a ClickHouse *server* (the embedded engine belongs
to a single process): the session's chdb-core server, or TRACKSTREAM_TEST_CLICKHOUSE."""

from __future__ import annotations

import dataclasses
import time
import uuid

from trackstream.infra.topics import ensure_topics
from tests.integration.harness import free_port, make_server, wait_until
from tests.integration.workload import produce_workload, table_counts


def test_workers_joining_and_dying_rebalance_without_loss(kafka_bootstrap, clickhouse_server_dsn, tmp_path):
    name = f"scale{uuid.uuid4().hex[:6]}"
    first = make_server(kafka_bootstrap, tmp_path / "a", name)
    first.settings = dataclasses.replace(first.settings, clickhouse_dsn=clickhouse_server_dsn)
    second = dataclasses.replace(make_server(kafka_bootstrap, tmp_path / "b", name), settings=dataclasses.replace(
        first.settings, home=tmp_path / "b", server_port=free_port()))
    ensure_topics(first.settings)
    expected = produce_workload(first.settings)
    first.start()
    time.sleep(2)
    second.start()  # joins the group: partitions move while the first is mid-ingest
    time.sleep(3)
    first.kill()    # dies: its partitions move to the second worker
    try:
        wait_until(lambda: table_counts(second)["points"] >= expected["points"], 300, "ingest", interval=1.0)
        time.sleep(2)
        counts = table_counts(second)
    finally:
        second.stop()
    for key in ("points", "params", "tags", "artifacts", "events"):
        assert counts[key] == expected[key], key
