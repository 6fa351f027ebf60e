"""Exactly-once holes of issue 11, each pinned by a test that failed before its fix."""

from __future__ import annotations

import pytest

from trackstream.consumers import store
from trackstream.consumers.materializer import Materializer
from trackstream.consumers.store import ClickHouseSink, ClickHouseStateReader
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
