"""Finalize deadline: a run still FINALIZING this long after its end time becomes FAILED.

The decision is appended to the log as a ``run_status_changed`` event (rather than written to
ClickHouse directly) so that replaying the log reproduces it.
"""

from __future__ import annotations

import uuid
from typing import Any

from clickhouse_connect.driver.client import Client

from trackstream.consumers.run_state import FAILED, FINALIZING
from trackstream.consumers.store import check_database_name
from trackstream.schemas import default_codec

FINALIZER_WRITER_PREFIX = "trackstream-finalizer"


def overdue_runs(client: Client, database: str, now_ms: int, timeout_ms: int) -> list[tuple[str, list[str]]]:
    """Runs FINALIZING whose end time is more than ``timeout_ms`` ago, with their missing paths."""
    db = check_database_name(database)
    result = client.query(
        f"SELECT run_id, missing_artifacts FROM {db}.runs_latest "
        f"WHERE status = {{s:String}} AND end_time < {{cutoff:Int64}} ORDER BY run_id",
        parameters={"s": FINALIZING, "cutoff": now_ms - timeout_ms})
    return [(run_id, list(missing)) for run_id, missing in result.result_rows]


def finalize_timeout_event(run_id: str, now_ms: int) -> tuple[bytes, bytes]:
    """(key, value) of the FAILED status event; each one is its own writer, so seq is 1."""
    record = {"event_id": uuid.uuid4().hex, "writer_id": f"{FINALIZER_WRITER_PREFIX}-{uuid.uuid4().hex[:12]}",
              "seq": 1, "timestamp_ms": now_ms, "run_id": run_id, "status": FAILED, "end_time_ms": now_ms}
    return run_id.encode(), default_codec().encode("run_status_changed", record)


class FinalizeDeadline:
    """Remembers which runs it already failed so a slow materialization does not fail them twice."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_ms = int(timeout_s * 1000)
        self._sent: set[str] = set()

    def due(self, overdue: list[tuple[str, list[str]]]) -> list[tuple[str, list[str]]]:
        current = {run_id for run_id, _ in overdue}
        self._sent &= current
        fresh = [(r, m) for r, m in overdue if r not in self._sent]
        self._sent |= {r for r, _ in fresh}
        return fresh

    def status(self) -> dict[str, Any]:
        return {"finalize_timeout_s": self.timeout_ms / 1000, "finalize_pending_failures": len(self._sent)}
