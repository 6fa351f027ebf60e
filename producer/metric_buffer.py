"""MetricBuffer: collects points per run and key cheaply and hands them out as columnar MetricBatches.

``add`` is the hot path of ``log_metric``: three list appends to the run and key's columns (value,
step, then timestamp), no lock, no encoding, no I/O. A drain takes the first ``n`` entries of
each column, ``n`` being the length of the timestamp column: it is appended last, so those
``n`` rows are complete in all three even while another thread appends, and slicing then
deleting a list prefix are each one atomic operation under the GIL. Drains take a lock among
themselves (the background flusher and a caller's ``flush`` may drain at once). Columns become
numpy arrays once per batch with ``np.array`` over the lists — C loops, no per-point Python.

Batches a caller drained but could not hand on (the spool refused them) come back through
``put_back`` and are handed out again first, in their order, by the next drain.
"""

from __future__ import annotations

import threading

import numpy as np

from trackstream.schemas import MetricBatch

MAX_POINTS_PER_BATCH = 50_000


class MetricBuffer:
    def __init__(self, max_points: int = MAX_POINTS_PER_BATCH) -> None:
        self.max_points = max_points
        # run id -> key -> (values, steps, timestamps)
        self._columns: dict[str, dict[str, tuple[list[float], list[int], list[int]]]] = {}
        self._arrays: dict[str, list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]] = {}
        self._returned: list[tuple[str, MetricBatch]] = []
        self._lock = threading.Lock()
        self._drain_lock = threading.Lock()

    @property
    def pending(self) -> int:
        points = sum(len(cols[2]) for keys in list(self._columns.values()) for cols in list(keys.values()))
        points += sum(len(batch) for _, batch in list(self._returned))
        return points + sum(len(part[1]) for parts in list(self._arrays.values()) for part in list(parts))

    def _key_columns(self, run_id: str, key: str) -> tuple[list[float], list[int], list[int]]:
        with self._lock:
            return self._columns.setdefault(run_id, {}).setdefault(key, ([], [], []))

    def add(self, run_id: str, key: str, value: float, step: int, timestamp_ms: int) -> bool:
        """Buffer one point; returns True when the run and key's buffer is full and should be drained."""
        keys = self._columns.get(run_id)
        cols = keys.get(key) if keys is not None else None
        if cols is None:
            cols = self._key_columns(run_id, key)
        values, steps, stamps = cols
        values.append(value)
        steps.append(step)
        stamps.append(timestamp_ms)
        return len(stamps) >= self.max_points

    def add_arrays(self, run_id: str, key: str, values: np.ndarray, steps: np.ndarray,
                   timestamps: np.ndarray) -> None:
        with self._lock:
            self._arrays.setdefault(run_id, []).append((key, values, steps, timestamps))

    def drain(self, run_id: str | None = None) -> list[tuple[str, MetricBatch]]:
        """Take buffered points (of one run, or all) as batches of at most max_points each."""
        with self._lock:
            run_ids = [run_id] if run_id is not None else list(set(self._columns) | set(self._arrays))
            batches = [(rid, b) for rid, b in self._returned if run_id is None or rid == run_id]
            self._returned = [(rid, b) for rid, b in self._returned if run_id is not None and rid != run_id]
        for rid in run_ids:
            with self._drain_lock:
                segments = [(key, *_take_rows(cols)) for key, cols in list(self._columns.get(rid, {}).items())]
                with self._lock:
                    parts = self._arrays.pop(rid, [])
            segments = [segment for segment in segments if len(segment[1])]
            if segments:
                batches.extend((rid, b) for b in self._split(_from_segments(segments)))
            for key, values, steps, stamps in parts:
                batch = MetricBatch([key], np.zeros(len(values), np.uint32), steps, stamps, values)
                batches.extend((rid, b) for b in self._split(batch))
        return batches

    def put_back(self, batches: list[tuple[str, MetricBatch]]) -> None:
        """Return drained batches that were not sent; the next drain hands them out first, in order."""
        if batches:
            with self._lock:
                self._returned[:0] = batches

    def _split(self, batch: MetricBatch) -> list[MetricBatch]:
        if len(batch) <= self.max_points:
            return [batch]
        return [MetricBatch(batch.keys, batch.key_index[i:i + self.max_points], batch.steps[i:i + self.max_points],
                            batch.timestamps[i:i + self.max_points], batch.values[i:i + self.max_points])
                for i in range(0, len(batch), self.max_points)]


def _take_rows(cols: tuple[list[float], list[int], list[int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The complete rows in the columns now, as arrays; rows appended meanwhile stay for the next drain."""
    n = len(cols[2])
    taken = []
    for column, dtype in zip(cols, (np.float64, np.int64, np.int64)):
        taken.append(np.array(column[:n], dtype))
        del column[:n]
    values, steps, stamps = taken
    return values, steps, stamps


def _from_segments(segments: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]) -> MetricBatch:
    lengths = [len(values) for _, values, _, _ in segments]
    return MetricBatch(
        [key for key, _, _, _ in segments],
        np.repeat(np.arange(len(segments), dtype=np.uint32), lengths),
        np.concatenate([steps for _, _, steps, _ in segments]),
        np.concatenate([stamps for _, _, _, stamps in segments]),
        np.concatenate([values for _, values, _, _ in segments]),
    )
