"""RunDataCache: the metrics / params / tags part of MLflow's Run objects, kept between reads.

A search answers with up to 1000 full runs; on the embedded engine fetching their data is a query
of its own (~25 ms for 100 runs of a 10k-run experiment). Finished runs do not change, and the
worker says which runs every stored batch changed, so the gateway keeps that data and forgets a
run the moment a batch touches it.

Ordering makes it safe: the worker's callback invalidates *before* it advances the
read-your-writes marks, so a read that waited for its own writes cannot be served data older than
them; and a read that fetched a run's data while a batch was changing that run does not store
what it fetched (``put_many`` compares generations).

In the all-in-one server the cache also holds the gateway's own writes (``RunDataCache``), so
``runs/get`` right after a ``log-metric`` is answered without waiting for the worker: the read of
a just-written run is what the gateway itself appended, applied to what it last read.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Iterable, Mapping

import numpy as np

from trackstream.consumers.materializer import BatchChanges
from trackstream.schemas.metric_batch import MetricBatch
from trackstream.server.own_appends import OwnAppends

RunData = dict[str, list[dict[str, Any]]]

RUN_NAME_TAG = "mlflow.runName"  # its value is also the run info's run_name: not patched

# How many invalidation generations a fetch may span and still be checked exactly. A generation
# is one stored batch (at most every few ms), reads time out after 30 s: far below this.
_TRACKED_GENERATIONS = 100_000


class InvalidatedCache:
    """An LRU map from id to what was read about it, whose entries are forgotten when told the id
    changed; a value read while its id changed is not stored (``generation`` / ``fetched_at``)."""

    def __init__(self, capacity: int = 50_000) -> None:
        self.capacity = capacity
        self._data: OrderedDict[str, RunData] = OrderedDict()
        self._touched_at: dict[str, int] = {}
        self._trim_at = 4 * capacity
        self._generation = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def generation(self) -> int:
        """Take before fetching; pass to ``put_many`` with what was fetched."""
        with self._lock:
            return self._generation

    def get_many(self, run_ids: Iterable[str]) -> dict[str, RunData]:
        found: dict[str, RunData] = {}
        with self._lock:
            for run_id in run_ids:
                data = self._data.get(run_id)
                if data is not None:
                    self._data.move_to_end(run_id)
                    found[run_id] = data
                    self.hits += 1
                else:
                    self.misses += 1
        return found

    def get(self, key: str) -> Any:
        return self.get_many((key,)).get(key)

    def put(self, key: str, value: Any, fetched_at: int | None = None) -> None:
        """Store ``value``; ``fetched_at`` (a ``generation()`` taken before reading it) None means
        it is known current (this process just wrote it)."""
        self.put_many({key: value}, self.generation() if fetched_at is None else fetched_at)

    def put_many(self, fetched: dict[str, Any], fetched_at: int) -> None:
        with self._lock:
            for run_id, data in fetched.items():
                if self._touched_at.get(run_id, -1) > fetched_at:
                    continue  # a batch changed the run while it was being read
                self._data[run_id] = data
                self._data.move_to_end(run_id)
            while len(self._data) > self.capacity:
                self._data.popitem(last=False)

    def invalidate(self, run_ids: Iterable[str]) -> None:
        with self._lock:
            for run_id in self._touch(run_ids):
                self._data.pop(run_id, None)

    def _touch(self, run_ids: Iterable[str]) -> Iterable[str]:
        """A new generation in which ``run_ids`` changed (under the lock): nothing fetched before it
        is stored for them. Returns the ids."""
        self._generation += 1
        run_ids = list(run_ids)
        for run_id in run_ids:
            self._touched_at[run_id] = self._generation
        if len(self._touched_at) > self._trim_at:  # amortized: the next trim waits for twice what is left
            oldest = self._generation - _TRACKED_GENERATIONS
            self._touched_at = {r: g for r, g in self._touched_at.items() if g > oldest}
            self._trim_at = max(4 * self.capacity, 2 * len(self._touched_at))
        return run_ids


class RunDataCache(InvalidatedCache):
    """Runs' metrics / params / tags for reads (module docstring), and with them the run's info
    once a single-run read fetched it (``"info"``).

    With ``own_appends`` (the all-in-one server, whose worker reports which events changed each
    run) an entry also holds this gateway's own acknowledged appends: ``apply_own_append``
    patches the entry the moment Kafka acknowledges a metric, param or tag event, and a batch that
    materializes only such events keeps the entry instead of forgetting it. A read of a cached run
    then sees its own writes without waiting for the worker (``holds_own_writes``)."""

    def __init__(self, capacity: int = 50_000, own_appends: OwnAppends | None = None) -> None:
        super().__init__(capacity)
        self.own_appends = own_appends
        self._pending: dict[str, tuple[int, int]] = {}  # run -> its latest own append the worker may not have stored
        self._materialized: dict[int, int] = {}

    @property
    def holds_own_writes(self) -> bool:
        return self.own_appends is not None

    def apply_own_append(self, run_id: str, partition: int, offset: int, event_type: str,
                         record: Mapping[str, Any]) -> None:
        """Kafka acknowledged an event this gateway appended on ``run_id``: patch the cached entry,
        or forget it when the event is not one ``patch_run_data`` can apply. Until the worker has
        stored the event, nothing fetched from ClickHouse is cached for the run (it would lack it)."""
        if self.own_appends is None:
            return
        with self._lock:
            self._touch((run_id,))
            if offset > self._materialized.get(partition, -1):
                self._pending[run_id] = (partition, offset)
            entry = self._data.get(run_id)
            if entry is not None:
                patched = patch_run_data(entry, event_type, record)
                if patched is None:
                    del self._data[run_id]
                else:
                    self._data[run_id] = patched

    def forget(self, changes: BatchChanges, positions: Mapping[int, int]) -> None:
        """A stored batch's changes, told before the read-your-writes marks pass ``positions``."""
        if self.own_appends is None:
            self.invalidate(changes.runs)
            return
        with self._lock:
            for partition, offset in positions.items():
                if offset > self._materialized.get(partition, -1):
                    self._materialized[partition] = offset
            for run_id in self._touch(changes.runs | changes.refused_runs):
                if not self._only_own_events(run_id, changes):
                    self._data.pop(run_id, None)
            if len(self._pending) > self.capacity:
                self._pending = {r: p for r, p in self._pending.items() if not self._stored(p)}

    def put_many(self, fetched: dict[str, Any], fetched_at: int) -> None:
        if self._pending:
            with self._lock:
                fetched = {r: d for r, d in fetched.items() if self._pending_clear(r)}
        super().put_many(fetched, fetched_at)

    def _only_own_events(self, run_id: str, changes: BatchChanges) -> bool:
        events = changes.run_events.get(run_id)
        return (bool(events) and run_id not in changes.refused_runs
                and all(event in self.own_appends for event in events))  # type: ignore[operator]

    def _stored(self, position: tuple[int, int]) -> bool:
        return position[1] <= self._materialized.get(position[0], -1)

    def _pending_clear(self, run_id: str) -> bool:
        position = self._pending.get(run_id)
        if position is None:
            return True
        if self._stored(position):
            del self._pending[run_id]
            return True
        return False


def patch_run_data(entry: dict[str, Any], event_type: str, record: Mapping[str, Any]) -> dict[str, Any] | None:
    """``entry`` with one metric, param or tag event applied as the materializer stores it and
    the reader reads it back (latest metric = max of (step, timestamp, value), a param keeps its
    first value, a tag its last); None for any other event, or one whose outcome the gateway
    cannot be sure of (NaN values, a param changing value, the run's name)."""
    patched = dict(entry)
    if event_type == "tag_deleted":
        if record["key"] == RUN_NAME_TAG:
            return None
        patched["tags"] = [t for t in entry["tags"] if t["key"] != record["key"]]
        return patched
    if event_type not in ("metrics_logged", "params_set", "tags_set"):
        return None
    params = {p["key"]: p["value"] for p in entry["params"]}
    for param in record.get("params") or ():
        if params.setdefault(param["key"], param["value"]) != param["value"]:
            return None
    tags = {t["key"]: t["value"] for t in entry["tags"]}
    for tag in record.get("tags") or ():
        if tag["key"] == RUN_NAME_TAG:
            return None
        tags[tag["key"]] = tag["value"]
    if event_type == "metrics_logged" and record["count"]:
        latest = latest_points(MetricBatch.from_record(record))
        if latest is None:
            return None
        for metric in entry["metrics"]:
            point = (metric["step"], metric["timestamp"], metric["value"])
            latest[metric["key"]] = max(latest.get(metric["key"], point), point)
        patched["metrics"] = [{"key": k, "value": value, "timestamp": ts, "step": step}
                              for k, (step, ts, value) in sorted(latest.items())]
    patched["params"] = [{"key": k, "value": val} for k, val in sorted(params.items())]
    patched["tags"] = [{"key": k, "value": val} for k, val in sorted(tags.items())]
    return patched


def latest_points(batch: MetricBatch) -> dict[str, tuple[int, int, float]] | None:
    """Each key's greatest (step, timestamp, value) in ``batch``; None when a value is NaN (whose
    order ClickHouse and Python do not agree on)."""
    if np.isnan(batch.values).any():
        return None
    order = np.lexsort((batch.values, batch.timestamps, batch.steps, batch.key_index))
    keys = batch.key_index[order]
    last = order[np.append(keys[1:] != keys[:-1], True)]
    return {batch.keys[int(batch.key_index[i])]: (int(batch.steps[i]), int(batch.timestamps[i]), float(batch.values[i]))
            for i in last}
