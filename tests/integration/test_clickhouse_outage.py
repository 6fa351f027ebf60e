"""Exactly once through ClickHouse outages (issue 11, hole 1): the ClickHouse server is stopped
for 10 s mid-ingest, three times. The worker must wait it out and never let Kafka commit an
offset whose events are not stored."""

from __future__ import annotations

import dataclasses
import time
import uuid

import clickhouse_connect
import pytest
from confluent_kafka import Consumer, TopicPartition

from trackstream.infra.clickhouse_server import ClickHouseServer
from trackstream.infra.topics import ensure_topics
from tests.integration.harness import free_port, make_server, wait_until
from tests.integration.workload import produce_workload

OUTAGE_S = 10.0


def committed_offsets(settings) -> dict[int, int]:
    """The consumer group's committed offset per partition (the next offset it would read)."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": settings.consumer_group,
                         "enable.auto.commit": False})
    try:
        parts = consumer.committed([TopicPartition(settings.topic, p) for p in range(settings.partitions)], timeout=10)
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in parts if tp.offset >= 0}


def stored_offsets(client, db: str) -> dict[int, int]:
    """The last offset stored per partition: an applied event is in events, a refused one in rejects."""
    rows = client.query(f"SELECT src_partition, max(src_offset) FROM (SELECT src_partition, src_offset FROM {db}.events "
                        f"UNION ALL SELECT src_partition, src_offset FROM {db}.rejects) GROUP BY src_partition")
    return {int(p): int(o) for p, o in rows.result_rows}


def stored_totals(client, db: str) -> dict:
    (points, value_sum, step_sum), = client.query(f"SELECT count(), sum(value), sum(step) FROM {db}.metrics").result_rows
    count = lambda table: int(client.command(f"SELECT count() FROM {db}.{table}"))  # noqa: E731
    return {"points": points, "value_sum": value_sum, "step_sum": step_sum, "params": count("params"),
            "tags": count("tags"), "artifacts": count("artifacts"),
            "events": int(client.command(f"SELECT count() FROM {db}.events WHERE event_type NOT LIKE 'experiment%'"))}


def test_clickhouse_stopped_mid_ingest_three_times_loses_and_duplicates_nothing(kafka_bootstrap, tmp_path):
    clickhouse = ClickHouseServer(tmp_path / "ch", http_port=free_port(), tcp_port=free_port())
    clickhouse.start(timeout=60)
    name = f"outage{uuid.uuid4().hex[:6]}"
    worker = make_server(kafka_bootstrap, tmp_path / "w", name)
    worker.settings = dataclasses.replace(worker.settings, clickhouse_dsn=clickhouse.dsn)
    worker.role = "worker"
    db = worker.settings.database
    ensure_topics(worker.settings)
    expected: dict = {}

    def produce(seed: int) -> None:
        for key, value in produce_workload(worker.settings, seed=seed).items():
            expected[key] = expected.get(key, 0) + value

    try:
        produce(1)
        worker.start()
        client = clickhouse_connect.get_client(dsn=clickhouse.dsn)
        wait_until(lambda: int(client.command(f"EXISTS TABLE {db}.metrics")) and stored_totals(client, db)["points"],
                   120, "a first stored batch")
        for outage in range(3):
            client.close()
            clickhouse.stop()
            down_since = time.monotonic()
            produce(outage + 2)  # more events arrive while ClickHouse is down
            time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_since)))
            committed_while_down = committed_offsets(worker.settings)
            assert worker.process.poll() is None, worker.log_tail()
            clickhouse.start(timeout=60)
            client = clickhouse_connect.get_client(dsn=clickhouse.dsn)
            stored = stored_offsets(client, db)  # only grows: at least what was stored while down
            ahead = {p: (c, stored.get(p, -1)) for p, c in committed_while_down.items() if c > stored.get(p, -1) + 1}
            assert ahead == {}, f"outage {outage}: offsets committed beyond the stored rows: {ahead}"
            time.sleep(2.0)  # the worker resumes mid-ingest before the next outage

        def caught_up():
            totals = stored_totals(client, db)
            return totals if totals["events"] >= expected["events"] and totals["points"] >= expected["points"] else None

        wait_until(caught_up, 300, "the worker to store everything", interval=1.0)
        time.sleep(2)  # anything still in flight would show up as a duplicate now
        totals = stored_totals(client, db)
        assert worker.process.poll() is None, worker.log_tail()
    finally:
        worker.stop()
        clickhouse.stop()

    assert totals["points"] == expected["points"]
    assert totals["value_sum"] == pytest.approx(expected["value_sum"], rel=1e-9, abs=1e-6)
    assert totals["step_sum"] == expected["step_sum"]
    for table in ("params", "tags", "artifacts", "events"):
        assert totals[table] == expected[table], table
