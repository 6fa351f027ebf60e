"""What a gateway checks MLflow writes against, kept between requests, and when to forget it.

MLflow answers some writes from current state: a deleted run refuses metrics, a param keeps its
first value, a deleted experiment refuses new runs. A gateway caches that state per run and
experiment (``MlflowService``), updated by its own writes. Other writers change it too: another
gateway, or the SDK appending to Kafka directly. The worker reports every such change with the
event that made it (``BatchChanges.write_state``); a gateway forgets the cached entry unless it
appended that event itself, in which case its cache already holds the result. The next write to
that run reads the state again, after read-your-writes.

A write that races another writer before the change is materialized is still caught by the
materializer (a rejects row), as before.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from trackstream.consumers.materializer import BatchChanges, WriteStateChange
from trackstream.server.own_appends import OwnAppends
from trackstream.server.run_cache import InvalidatedCache, RunDataCache


class WriteStateCache:
    def __init__(self, capacity: int = 100_000) -> None:
        self.runs = InvalidatedCache(capacity)  # run id -> CachedRun (server/mlflow_service.py)
        self.experiment_stages = InvalidatedCache(capacity)  # experiment id -> lifecycle stage
        self.own_appends = OwnAppends()  # shared with the all-in-one server's run cache

    def forget_changes(self, changes: Iterable[WriteStateChange]) -> None:
        runs: list[str] = []
        experiments: list[str] = []
        for kind, entity_id, partition, offset in changes:
            if (partition, offset) in self.own_appends:
                continue
            (runs if kind == "run" else experiments).append(entity_id)
        if runs:
            self.runs.invalidate(runs)
        if experiments:
            self.experiment_stages.invalidate(experiments)


def forget_changes(changes: BatchChanges, positions: Mapping[int, int], run_cache: RunDataCache,
                   write_state: WriteStateCache | None) -> None:
    """What a gateway does with a stored batch's changes, before its read-your-writes marks move
    past ``positions`` (server/run_cache.py says why that order)."""
    if changes.runs or changes.refused_runs:
        run_cache.forget(changes, positions)
    if write_state is not None and changes.write_state:
        write_state.forget_changes(changes.write_state)
