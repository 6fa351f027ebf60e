"""Finalize deadline: a run still FINALIZING this long after its end time becomes FAILED.

The decision is appended to the log as a ``run_status_changed`` event (rather than written to
ClickHouse directly) so that replaying the log reproduces it. Only the worker that owns the
run's partition decides, and only once everything the log held there is stored (so state that
lags behind the log, say after an outage, is not judged). Even so the decision is made from
materialized state, and an artifact commit may land between it and the FAILED event: the
materializer applies that FAILED only if the run is still FINALIZING at its place in the log.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from clickhouse_connect.driver.client import Client

from trackstream.consumers.run_state import FAILED, FINALIZER_WRITER_PREFIX, FINALIZING
from trackstream.consumers.store import check_database_name
from trackstream.schemas import default_codec


@dataclass(frozen=True)
class OverdueRun:
    run_id: str
    partition: int
    missing: list[str]


def overdue_runs(client: Client, database: str, now_ms: int, timeout_ms: int) -> list[OverdueRun]:
    """Runs FINALIZING whose end time is more than ``timeout_ms`` ago, with their partition and missing paths."""
    db = check_database_name(database)
    result = client.query(
        f"SELECT run_id, src_partition, missing_artifacts FROM {db}.runs_latest "
        f"WHERE status = {{s:String}} AND end_time < {{cutoff:Int64}} ORDER BY run_id",
        parameters={"s": FINALIZING, "cutoff": now_ms - timeout_ms})
    return [OverdueRun(run_id, int(partition), list(missing)) for run_id, partition, missing in result.result_rows]


def decidable_partitions(assigned: Iterable[int], stored: Mapping[int, int], highwaters: Mapping[int, int]) -> set[int]:
    """Partitions this worker owns whose log, up to its end as last seen, is all stored.

    ``stored`` is the last offset stored per partition, ``highwaters`` the next offset the log
    will write (unknown until the consumer has fetched from the partition)."""
    return {p for p in assigned if p in highwaters and stored.get(p, -1) + 1 >= highwaters[p]}


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

    def due(self, overdue: list[OverdueRun], decidable: set[int]) -> list[OverdueRun]:
        """The overdue runs on ``decidable`` partitions not already failed by this worker."""
        current = {r.run_id for r in overdue}
        self._sent &= current
        fresh = [r for r in overdue if r.partition in decidable and r.run_id not in self._sent]
        self._sent |= {r.run_id for r in fresh}
        return fresh

    def status(self) -> dict[str, Any]:
        return {"finalize_timeout_s": self.timeout_ms / 1000, "finalize_pending_failures": len(self._sent)}
