"""search_runs latency on the embedded engine: 10,000 runs, metric filter + order_by.

Creates a temporary chdb database with --runs runs (3 metrics x --steps points, 3 params, 2 tags
each, in several insert batches so latest_metrics holds unmerged parts), then times --searches
queries built by ``server.search.build_search_query`` per case and prints wall-clock p50 / p99 /
max and process CPU time in ms (CPU time is the steadier number on a shared machine). The target
is p99 < 100 ms for a metric filter with an order_by.

    python benchmarks/bench_search.py [--runs 10000] [--searches 200]
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
from trackstream.server.search import build_search_query, encode_page_token  # noqa: E402

DATABASE = "bench_search"
EXPERIMENTS = 4
BATCHES = 5


def seed(client, runs: int, steps: int) -> None:
    rng = np.random.default_rng(0)
    run_ids = [f"{i:032x}" for i in range(runs)]
    offset = iter(range(1, 10**9))
    client.insert(f"{DATABASE}.runs", [
        [rid, str(i % EXPERIMENTS), f"run-{i}", "bench", "src", "", "FINISHED", 1_700_000_000_000 + i * 1000,
         1_700_000_001_000 + i * 1000, "deleted" if i % 50 == 0 else "active", f"s3://b/{rid}", [], 0, next(offset)]
        for i, rid in enumerate(run_ids)],
        column_names=["run_id", "experiment_id", "run_name", "user_id", "source_name", "parent_run_id", "status",
                      "start_time", "end_time", "lifecycle_stage", "artifact_uri", "missing_artifacts",
                      "src_partition", "src_offset"])
    client.insert(f"{DATABASE}.params", [
        [rid, key, value, 0, "e", 0, next(offset)]
        for i, rid in enumerate(run_ids)
        for key, value in (("lr", str(10 ** -(i % 4))), ("optimizer", ("adam", "sgd")[i % 2]), ("seed", str(i)))],
        column_names=["run_id", "key", "value", "timestamp_ms", "event_id", "src_partition", "src_offset"])
    client.insert(f"{DATABASE}.tags", [
        [rid, key, value, 0, 0, next(offset)]
        for i, rid in enumerate(run_ids) for key, value in (("mlflow.runName", f"run-{i}"), ("team", f"t{i % 7}"))],
        column_names=["run_id", "key", "value", "deleted", "src_partition", "src_offset"])
    per_batch = max(1, steps // BATCHES)
    for batch in range(BATCHES):
        step = np.arange(batch * per_batch, (batch + 1) * per_batch)
        n = runs * 3 * len(step)
        table = pa.table({
            "run_id": np.repeat(run_ids, 3 * len(step)),
            "key": np.tile(np.repeat(["acc", "loss", "lr_sched"], len(step)), runs),
            "step": np.tile(step, runs * 3).astype(np.int64),
            "timestamp_ms": np.tile(1_700_000_000_000 + step, runs * 3).astype(np.int64),
            "value": rng.random(n),
            "src_partition": np.zeros(n, dtype=np.uint32),
            "src_offset": np.arange(n, dtype=np.uint64) + 10**8 * (batch + 1),
        })
        client.insert_arrow(f"{DATABASE}.metrics", table)


CASES = {
    "metric filter + order by metric (100 rows)":
        dict(filter_string="metrics.acc > {x}", order_by=["metrics.loss ASC"], max_results=100),
    "metric filter + order by metric (1000 rows, page 2)":
        dict(filter_string="metrics.acc > {x}", order_by=["metrics.loss DESC"], max_results=1000,
             page_token=encode_page_token(1000)),
    "metric + param + tag filter, order by metric":
        dict(filter_string="metrics.acc > {x} and params.optimizer = 'adam' and tags.team LIKE 't%'",
             order_by=["metrics.acc DESC"], max_results=100),
    "no filter, default order (1000 rows)":
        dict(filter_string="", order_by=[], max_results=1000),
}


def time_case(client, searches: int, spec: dict) -> tuple[list[float], list[float]]:
    """Wall and process CPU ms per search (the engine runs in-process, so CPU time includes its threads)."""
    rng = np.random.default_rng(1)
    wall, cpu = [], []
    for _ in range(searches):
        filter_string = spec["filter_string"].format(x=round(float(rng.uniform(0.05, 0.95)), 3))
        start, start_cpu = time.perf_counter(), time.process_time()
        sql, params = build_search_query(DATABASE, [str(e) for e in range(EXPERIMENTS)], filter_string,
                                         spec["order_by"], "ACTIVE_ONLY", spec["max_results"], spec.get("page_token"))
        rows = client.query(sql, parameters=params).result_rows
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
        assert rows or filter_string
    return sorted(wall), sorted(cpu)


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=20, help="points per metric per run")
    parser.add_argument("--searches", type=int, default=200)
    args = parser.parse_args()
    with seeded_database(DATABASE, lambda c: seed(c, args.runs, args.steps), "bench-search-") as client:
        print(f"{args.runs} runs, {client.command(f'SELECT count() FROM {DATABASE}.metrics')} metric points")
        print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        for name, spec in CASES.items():
            time_case(client, 5, spec)
            wall, cpu = time_case(client, args.searches, spec)
            print(f"{name:52s} wall p50 {statistics.median(wall):6.1f}  p99 {percentile(wall, 0.99):6.1f}  "
                  f"max {wall[-1]:6.1f} ms | cpu p50 {statistics.median(cpu):6.1f}  "
                  f"p99 {percentile(cpu, 0.99):6.1f} ms")
        print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
