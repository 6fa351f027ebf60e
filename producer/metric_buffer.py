"""MetricBuffer: collects points per run cheaply and hands them out as columnar MetricBatches.

``add`` is the hot path of ``log_metric``: one tuple appended to a per-run deque, no lock,
no encoding, no I/O (``deque.append`` and ``popleft`` are atomic under the GIL, so a drain
racing an add neither loses nor duplicates a point). Drains take a lock among themselves: the
background flusher and a caller's ``flush`` may drain at once, and two drainers each popping
the length they saw would run the deque dry mid-way. Conversion to numpy arrays happens once
per batch in ``drain``, with C-level loops.
"""

from __future__ import annotations

import threading
from collections import deque
from itertools import repeat
from operator import itemgetter

import numpy as np

from schemas import MetricBatch

MAX_POINTS_PER_BATCH = 50_000
_KEY, _STEP, _TIMESTAMP, _VALUE = (itemgetter(i) for i in range(4))


class MetricBuffer:
    def __init__(self, max_points: int = MAX_POINTS_PER_BATCH) -> None:
        self.max_points = max_points
        self._points: dict[str, deque[tuple[str, int, int, float]]] = {}
        self._arrays: dict[str, deque[tuple[str, np.ndarray, np.ndarray, np.ndarray]]] = {}
        self._lock = threading.Lock()
        self._drain_lock = threading.Lock()

    @property
    def pending(self) -> int:
        return sum(map(len, list(self._points.values()))) + sum(
            len(part[1]) for parts in list(self._arrays.values()) for part in list(parts))

    def _run_deque(self, run_id: str) -> deque:
        with self._lock:
            return self._points.setdefault(run_id, deque())

    def add(self, run_id: str, key: str, value: float, step: int, timestamp_ms: int) -> bool:
        """Buffer one point; returns True when the run's buffer is full and should be drained."""
        points = self._points.get(run_id) or self._run_deque(run_id)
        points.append((key, step, timestamp_ms, value))
        return len(points) >= self.max_points

    def add_arrays(self, run_id: str, key: str, values: np.ndarray, steps: np.ndarray,
                   timestamps: np.ndarray) -> None:
        with self._lock:
            parts = self._arrays.setdefault(run_id, deque())
        parts.append((key, values, steps, timestamps))

    def drain(self, run_id: str | None = None) -> list[tuple[str, MetricBatch]]:
        """Take buffered points (of one run, or all) as batches of at most max_points each."""
        run_ids = [run_id] if run_id is not None else list(set(self._points) | set(self._arrays))
        batches = []
        for rid in run_ids:
            with self._drain_lock:
                points = _take_all(self._points.get(rid))
                parts = _take_all(self._arrays.get(rid))
            if points:
                batches.extend((rid, b) for b in self._split(self._from_points(points)))
            for key, values, steps, stamps in parts:
                batch = MetricBatch([key], np.zeros(len(values), np.uint32), steps, stamps, values)
                batches.extend((rid, b) for b in self._split(batch))
        return batches

    @staticmethod
    def _from_points(points: list[tuple[str, int, int, float]]) -> MetricBatch:
        n = len(points)
        keys = list(map(_KEY, points))
        index = {key: i for i, key in enumerate(dict.fromkeys(keys))}
        return MetricBatch(
            list(index),
            np.fromiter(map(index.__getitem__, keys), np.uint32, n),
            np.fromiter(map(_STEP, points), np.int64, n),
            np.fromiter(map(_TIMESTAMP, points), np.int64, n),
            np.fromiter(map(_VALUE, points), np.float64, n),
        )

    def _split(self, batch: MetricBatch) -> list[MetricBatch]:
        if len(batch) <= self.max_points:
            return [batch]
        return [MetricBatch(batch.keys, batch.key_index[i:i + self.max_points], batch.steps[i:i + self.max_points],
                            batch.timestamps[i:i + self.max_points], batch.values[i:i + self.max_points])
                for i in range(0, len(batch), self.max_points)]


def _take_all(queue: deque | None) -> list:
    """Pop what is in the deque now; items appended meanwhile stay for the next drain."""
    if not queue:
        return []
    pop = queue.popleft
    return [pop() for _ in repeat(None, len(queue))]
