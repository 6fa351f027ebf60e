"""The sink's write order is what makes a run's status a safe "everything before me is visible" signal."""

from __future__ import annotations

from types import SimpleNamespace

from trackstream.consumers.materializer import Materializer
from trackstream.consumers.store import ClickHouseSink
from tests.unit.consumers.events import EventLog
from tests.unit.consumers.test_materializer import EmptyStateReader


class RecordingClient:
    """Stands in for clickhouse-connect: no rows stored yet; records the tables inserted into."""

    def __init__(self) -> None:
        self.inserted: list[str] = []

    def query(self, sql, parameters=None):
        return SimpleNamespace(result_rows=[])

    def insert(self, table, rows, column_names=None, settings=None):
        self.inserted.append(table.split(".")[-1])

    def insert_arrow(self, table, arrow_table, settings=None):
        self.inserted.append(table.split(".")[-1])


def test_runs_table_is_written_after_everything_the_run_logged_in_the_same_batch():
    log = EventLog()
    log.add("experiment_created", experiment_id="0", name="e", artifact_location="file:///a", tags=[])
    log.run_created("r1", tags=[{"key": "team", "value": "core"}])
    log.add("params_set", run_id="r1", params=[{"key": "lr", "value": "0.1"}])
    log.metrics("r1", 5)
    log.add("tags_set", run_id="r1", tags=[{"key": "stage", "value": "done"}])
    log.add("run_status_changed", run_id="r1", status="FINISHED", end_time_ms=2000)
    rows = Materializer(EmptyStateReader()).process(log.messages)
    client = RecordingClient()
    ClickHouseSink(client, "ts").write(rows)
    assert client.inserted[-1] == "runs"
    assert {"metrics", "params", "tags", "events"} <= set(client.inserted[:-1])
