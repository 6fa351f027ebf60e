"""Token buckets for failed sign-ins: how many wrong passwords a client address, or guesses at one
user's password, may cost before the server refuses to check more for a while.

Each key (``("address", "10.0.0.7")``, ``("user", "alice")``) has a bucket of ``burst`` tokens that
refills at ``per_minute`` tokens a minute. A password check takes one token from every bucket it
names up front (so concurrent guesses cannot all slip past an almost empty bucket) and gives it
back when the password was right: only failures cost. An empty bucket means "retry after" the
seconds until it holds a token again. No I/O and an injected clock: unit-tested without a server.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Hashable, Sequence

Key = Hashable
MAX_TRACKED_KEYS = 100_000  # buckets kept at most (least recently used dropped first)


@dataclass
class _Bucket:
    tokens: float
    updated: float


class FailureLimiter:
    """Token buckets per key; :meth:`take` before a password check, :meth:`give_back` after a good one."""

    def __init__(self, burst: int, per_minute: float, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = MAX_TRACKED_KEYS) -> None:
        if burst < 1 or per_minute <= 0:
            raise ValueError(f"burst must be at least 1 and per_minute positive, got {burst} and {per_minute}")
        self.burst = burst
        self.per_second = per_minute / 60.0
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: OrderedDict[Key, _Bucket] = OrderedDict()

    def _refilled(self, key: Key, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            return _Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.per_second)
        bucket.updated = now
        return bucket

    def retry_after(self, keys: Sequence[Key]) -> float:
        """Seconds until every bucket of ``keys`` holds a token again (0: a check may run now)."""
        now = self.clock()
        return max((max(0.0, (1.0 - self._refilled(k, now).tokens) / self.per_second) for k in keys), default=0.0)

    def take(self, keys: Sequence[Key]) -> float:
        """Take a token from each bucket of ``keys`` and return 0, or, when one is empty, take
        nothing and return the seconds to wait."""
        wait = self.retry_after(keys)
        if wait > 0:
            return wait
        now = self.clock()
        for key in keys:
            bucket = self._refilled(key, now)
            bucket.tokens -= 1.0
            self._buckets[key] = bucket
            self._buckets.move_to_end(key)
        self._forget_excess()
        return 0.0

    def give_back(self, keys: Sequence[Key]) -> None:
        """Return the tokens :meth:`take` took: the password was right, so the attempt costs nothing."""
        now = self.clock()
        for key in keys:
            if key in self._buckets:
                bucket = self._refilled(key, now)
                bucket.tokens = min(float(self.burst), bucket.tokens + 1.0)

    def tracked(self) -> int:
        return len(self._buckets)

    def _forget_excess(self) -> None:
        """Drop buckets that have refilled (a full bucket is the same as none), then the least recently used."""
        if len(self._buckets) <= self.max_keys:
            return
        now = self.clock()
        for key in [k for k, b in self._buckets.items()
                    if b.tokens + (now - b.updated) * self.per_second >= self.burst]:
            del self._buckets[key]
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
