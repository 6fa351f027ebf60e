"""RunDataCache: the metrics / params / tags part of MLflow's Run objects, kept between reads.

A search answers with up to 1000 full runs; on the embedded engine fetching their data is a query
of its own (~25 ms for 100 runs of a 10k-run experiment). Finished runs do not change, and the
worker says which runs every stored batch changed, so the gateway keeps that data and forgets a
run the moment a batch touches it.

Ordering makes it safe: the worker's callback invalidates *before* it advances the
read-your-writes marks, so a read that waited for its own writes cannot be served data older than
them; and a read that fetched a run's data while a batch was changing that run does not store
what it fetched (``put_many`` compares generations).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Iterable

RunData = dict[str, list[dict[str, Any]]]

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
            self._generation += 1
            for run_id in run_ids:
                self._data.pop(run_id, None)
                self._touched_at[run_id] = self._generation
            if len(self._touched_at) > 4 * self.capacity:
                oldest = self._generation - _TRACKED_GENERATIONS
                self._touched_at = {r: g for r, g in self._touched_at.items() if g > oldest}


class RunDataCache(InvalidatedCache):
    """Runs' metrics / params / tags for reads (module docstring)."""
