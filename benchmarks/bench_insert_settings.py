"""Cost per metric point of an insert's settings (single block + deduplication token), in-process.

Every metrics insert names its events' (partition, offset) spans in a deduplication token
(consumers/store.py, insert_settings). This times that for one 500,000-row insert (the largest the
worker makes, MAX_ROWS_PER_INSERT) over 4 partitions of 1000-point events.

    python benchmarks/bench_insert_settings.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trackstream.consumers.store import MAX_ROWS_PER_INSERT, insert_settings  # noqa: E402


def main() -> None:
    rows = MAX_ROWS_PER_INSERT
    partitions = np.repeat(np.arange(4), rows // 4).astype(np.int64)
    offsets = np.repeat(np.arange(rows // 1000), 1000).astype(np.int64)
    best = float("inf")
    for _ in range(7):
        started = time.perf_counter()
        insert_settings("metrics", partitions, offsets)
        best = min(best, time.perf_counter() - started)
    print(f"insert_settings over {rows:,} rows: {best * 1000:.1f} ms, {best / rows * 1e9:.0f} ns per point (best of 7)")


if __name__ == "__main__":
    main()
