"""MetricBuffer: collects points per run cheaply and hands them out as columnar MetricBatches.

``add`` is the hot path of ``log_metric``: one tuple appended under a lock, no encoding and no
I/O. Conversion to numpy arrays happens once per batch in ``drain``, with C-level loops.
"""

from __future__ import annotations

import threading

import numpy as np

from schemas import MetricBatch

MAX_POINTS_PER_BATCH = 50_000


class MetricBuffer:
    def __init__(self, max_points: int = MAX_POINTS_PER_BATCH) -> None:
        self.max_points = max_points
        self._points: dict[str, list[tuple[str, int, int, float]]] = {}
        self._arrays: dict[str, list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]] = {}
        self._lock = threading.Lock()
        self.pending = 0

    def add(self, run_id: str, key: str, value: float, step: int, timestamp_ms: int) -> bool:
        """Buffer one point; returns True when the run's buffer is full and should be drained."""
        with self._lock:
            points = self._points.get(run_id)
            if points is None:
                points = self._points[run_id] = []
            points.append((key, step, timestamp_ms, value))
            self.pending += 1
            return len(points) >= self.max_points

    def add_arrays(self, run_id: str, key: str, values: np.ndarray, steps: np.ndarray,
                   timestamps: np.ndarray) -> None:
        with self._lock:
            self._arrays.setdefault(run_id, []).append((key, values, steps, timestamps))
            self.pending += len(values)

    def drain(self, run_id: str | None = None) -> list[tuple[str, MetricBatch]]:
        """Take buffered points (of one run, or all) as batches of at most max_points each."""
        with self._lock:
            if run_id is None:
                points, self._points = self._points, {}
                arrays, self._arrays = self._arrays, {}
            else:
                points = {run_id: self._points.pop(run_id)} if run_id in self._points else {}
                arrays = {run_id: self._arrays.pop(run_id)} if run_id in self._arrays else {}
            self.pending -= sum(map(len, points.values()))
            self.pending -= sum(len(a[1]) for parts in arrays.values() for a in parts)
        batches = []
        for rid, run_points in points.items():
            batches.extend((rid, b) for b in self._split(self._from_points(run_points)))
        for rid, parts in arrays.items():
            for key, values, steps, stamps in parts:
                batch = MetricBatch([key], np.zeros(len(values), np.uint32), steps, stamps, values)
                batches.extend((rid, b) for b in self._split(batch))
        return batches

    @staticmethod
    def _from_points(points: list[tuple[str, int, int, float]]) -> MetricBatch:
        n = len(points)
        keys, steps, stamps, values = zip(*points)
        index: dict[str, int] = {}
        for key in set(keys):
            index[key] = len(index)
        return MetricBatch(
            list(index),
            np.fromiter(map(index.__getitem__, keys), np.uint32, n),
            np.fromiter(steps, np.int64, n),
            np.fromiter(stamps, np.int64, n),
            np.fromiter(values, np.float64, n),
        )

    def _split(self, batch: MetricBatch) -> list[MetricBatch]:
        if len(batch) <= self.max_points:
            return [batch]
        return [MetricBatch(batch.keys, batch.key_index[i:i + self.max_points], batch.steps[i:i + self.max_points],
                            batch.timestamps[i:i + self.max_points], batch.values[i:i + self.max_points])
                for i in range(0, len(batch), self.max_points)]
