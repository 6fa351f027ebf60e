"""Metric-history reads on the embedded engine, without HTTP: what the read side itself costs.

Inserts one metric of --points points (in --parts inserts, as the worker would over time) into a
temporary chdb database, then times the reader's routes, median of --reps:

  * full history as numpy columns (what the JSON-columns route serialises),
  * full history as an Arrow IPC stream (the ``?format=arrow`` route's body),
  * every MLflow get-history page of 25,000 points, keyset-paged, including the page JSON,
  * a downsample to 1000 buckets (min / max / last per bucket, from ``metric_rollups``).

    python benchmarks/bench_history.py [--points 1000000] [--parts 20] [--reps 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.embedded import seeded_database  # noqa: E402
from trackstream.server import json_codec  # noqa: E402
from trackstream.server.reader import MlflowReader  # noqa: E402

DATABASE = "bench_history"
RUN, KEY = "r" * 32, "loss"
PAGE = 25_000


def seed(client, points: int, parts: int) -> None:
    rng = np.random.default_rng(0)
    for chunk in np.array_split(np.arange(points, dtype=np.int64), parts):
        n = len(chunk)
        client.insert_arrow(f"{DATABASE}.metrics", pa.table({
            "run_id": pa.array([RUN] * n).dictionary_encode(), "key": pa.array([KEY] * n).dictionary_encode(),
            "step": chunk, "timestamp_ms": chunk + 1_700_000_000_000, "value": rng.random(n),
            "src_partition": np.zeros(n, np.uint32), "src_offset": chunk.astype(np.uint64)}))


def all_pages(reader: MlflowReader) -> int:
    after, total = None, 0
    while True:
        page, after = reader.metric_history_page(RUN, KEY, after, PAGE)
        json_codec.encode_finite({"metrics": json_codec.metric_points(
            KEY, page["step"], page["timestamp_ms"], page["value"])})
        total += len(page["step"])
        if after is None:
            return total


def timed(reps: int, fn) -> tuple[float, object]:
    times, result = [], None
    for _ in range(reps):
        start = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--parts", type=int, default=20)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    with seeded_database(DATABASE, lambda c: seed(c, args.points, args.parts), "bench-history-") as client:
        print(f"{args.points:,} points in {args.parts} inserts; load average {os.getloadavg()[0]:.1f} "
              f"on {os.cpu_count()} CPUs")
        reader = MlflowReader(client, DATABASE)
        cases = {
            "full history, numpy columns": lambda: len(reader.metric_history(RUN, KEY)["step"]),
            "full history, Arrow IPC bytes": lambda: len(reader.metric_history_arrow(RUN, KEY)),
            f"MLflow get-history, every {PAGE:,}-point page + JSON": lambda: all_pages(reader),
            "downsample to 1000 buckets": lambda: len(reader.metric_downsampled(RUN, KEY, 1000)["bucket"]),
        }
        for name, fn in cases.items():
            ms, result = timed(args.reps, fn)
            print(f"{name:48s} {ms:8.1f} ms   ({result:,})")


if __name__ == "__main__":
    main()
