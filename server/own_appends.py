"""The events this gateway appended itself, by (partition, offset).

When the worker reports a change, a gateway's caches ask whether the event behind it was one of
their own appends: if so, the cache already holds its result (``server/write_state.py``,
``server/run_cache.py``); otherwise the cached entry is forgotten."""

from __future__ import annotations

from collections import OrderedDict

# At 5,000 writes/s this is 20 s of materialization lag; an own change older than that is treated as
# another writer's (it costs a re-read, never a wrong answer).
OWN_APPENDS_KEPT = 100_000


class OwnAppends:
    def __init__(self, kept: int = OWN_APPENDS_KEPT) -> None:
        self.kept = kept
        self._positions: OrderedDict[tuple[int, int], None] = OrderedDict()

    def add(self, partition: int, offset: int) -> None:
        self._positions[(partition, offset)] = None
        if len(self._positions) > self.kept:
            self._positions.popitem(last=False)

    def __contains__(self, position: object) -> bool:
        return position in self._positions
