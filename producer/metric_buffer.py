"""MetricBuffer: collects points per run cheaply and hands them out as columnar MetricBatches.

``add`` is the hot path of ``log_metric``: a dict lookup and four list appends, no encoding
and no I/O. Conversion to numpy arrays happens once per batch in ``drain``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from schemas import MetricBatch

MAX_POINTS_PER_BATCH = 50_000


@dataclass
class _RunPoints:
    keys: dict[str, int] = field(default_factory=dict)
    key_index: list[int] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    timestamps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)


class MetricBuffer:
    def __init__(self, max_points: int = MAX_POINTS_PER_BATCH) -> None:
        self.max_points = max_points
        self._runs: dict[str, _RunPoints] = {}
        self._lock = threading.Lock()
        self.pending = 0

    def add(self, run_id: str, key: str, value: float, step: int, timestamp_ms: int) -> bool:
        """Buffer one point; returns True when the run's buffer is full and should be drained."""
        with self._lock:
            points = self._runs.get(run_id)
            if points is None:
                points = self._runs[run_id] = _RunPoints()
            index = points.keys.get(key)
            if index is None:
                index = points.keys[key] = len(points.keys)
            points.key_index.append(index)
            points.steps.append(step)
            points.timestamps.append(timestamp_ms)
            points.values.append(value)
            self.pending += 1
            return len(points.values) >= self.max_points

    def add_arrays(self, run_id: str, key: str, values: np.ndarray, steps: np.ndarray,
                   timestamps: np.ndarray) -> None:
        with self._lock:
            points = self._runs.setdefault(run_id, _RunPoints())
            index = points.keys.setdefault(key, len(points.keys))
            points.key_index.extend([index] * len(values))
            points.steps.extend(steps.tolist())
            points.timestamps.extend(timestamps.tolist())
            points.values.extend(values.tolist())
            self.pending += len(values)

    def drain(self, run_id: str | None = None) -> list[tuple[str, MetricBatch]]:
        """Take buffered points (of one run, or all) as batches of at most max_points each."""
        with self._lock:
            if run_id is None:
                taken, self._runs = self._runs, {}
            else:
                one = self._runs.pop(run_id, None)
                taken = {run_id: one} if one is not None else {}
            self.pending -= sum(len(p.values) for p in taken.values())
        batches = []
        for rid, points in taken.items():
            keys = list(points.keys)
            key_index = np.array(points.key_index, dtype=np.uint32)
            steps = np.array(points.steps, dtype=np.int64)
            stamps = np.array(points.timestamps, dtype=np.int64)
            values = np.array(points.values, dtype=np.float64)
            for start in range(0, len(values), self.max_points):
                stop = start + self.max_points
                batches.append((rid, MetricBatch(keys, key_index[start:stop], steps[start:stop],
                                                 stamps[start:stop], values[start:stop])))
        return batches
