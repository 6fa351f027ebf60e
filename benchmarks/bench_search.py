"""search_runs latency on the embedded engine: 10,000 runs, metric filter + order_by.

Creates a temporary chdb database with --runs runs (3 metrics x --steps points, 3 params, 2 tags
each, in several insert batches so latest_metrics holds unmerged parts), then times --searches
queries built by ``server.search.build_search_query`` per case and prints wall-clock p50 / p99 /
max and process CPU time in ms (CPU time is the steadier number on a shared machine). The target
is p99 < 100 ms for a metric filter with an order_by.

    python benchmarks/bench_search.py [--runs 10000] [--searches 200] [--extra-keys 30 --versions 3 --steps 5]

--extra-keys and --versions give runs the shape real ones have: dozens of keys and a version per
lifecycle change (the defaults, 3 keys and one version, are the original bench's).
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
from trackstream.consumers.materializer import TABLE_COLUMNS  # noqa: E402
from trackstream.server.search import build_search_query, encode_page_token  # noqa: E402

DATABASE = "bench_search"
EXPERIMENTS = 4
BATCHES = 5


RUN_COLUMNS = list(TABLE_COLUMNS["runs"])


def seed(client, runs: int, steps: int, extra_keys: int = 0, versions: int = 1) -> None:
    """``extra_keys`` more metrics, params and tags per run besides the searched ones; each run
    stored as ``versions`` versions (RUNNING ... FINISHED), one insert each, as a worker would."""
    rng = np.random.default_rng(0)
    run_ids = [f"{i:032x}" for i in range(runs)]
    offset = iter(range(1, 10**9))
    for version in range(versions):
        last = version == versions - 1
        client.insert(f"{DATABASE}.runs", [
            [rid, str(i % EXPERIMENTS), f"run-{i}", "bench", "src", "", "FINISHED" if last else "RUNNING",
             1_700_000_000_000 + i * 1000, 1_700_000_001_000 + i * 1000 if last else None,
             "deleted" if i % 50 == 0 and last else "active", f"s3://b/{rid}", [], 0, next(offset)]
            for i, rid in enumerate(run_ids)], column_names=RUN_COLUMNS)
    extra = [f"x{k:03d}" for k in range(extra_keys)]
    client.insert(f"{DATABASE}.params", [
        [rid, key, value, 0, "e", 0, next(offset)]
        for i, rid in enumerate(run_ids)
        for key, value in (("lr", str(10 ** -(i % 4))), ("optimizer", ("adam", "sgd")[i % 2]), ("seed", str(i)),
                           *((key, str(i % 5)) for key in extra))],
        column_names=["run_id", "key", "value", "timestamp_ms", "event_id", "src_partition", "src_offset"])
    client.insert(f"{DATABASE}.tags", [
        [rid, key, value, 0, 0, next(offset)]
        for i, rid in enumerate(run_ids)
        for key, value in (("mlflow.runName", f"run-{i}"), ("team", f"t{i % 7}"), *((key, "v") for key in extra))],
        column_names=["run_id", "key", "value", "deleted", "src_partition", "src_offset"])
    keys = ["acc", "loss", "lr_sched", *extra]
    per_batch = max(1, steps // BATCHES)
    for batch in range(BATCHES):
        step = np.arange(batch * per_batch, (batch + 1) * per_batch)
        n = runs * len(keys) * len(step)
        table = pa.table({
            "run_id": np.repeat(run_ids, len(keys) * len(step)),
            "key": np.tile(np.repeat(keys, len(step)), runs),
            "step": np.tile(step, runs * len(keys)).astype(np.int64),
            "timestamp_ms": np.tile(1_700_000_000_000 + step, runs * len(keys)).astype(np.int64),
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


def parts(client) -> str:
    """Active parts of the tables a search reads (background merges change them while the bench runs)."""
    rows = client.query("SELECT table, count() FROM system.parts WHERE database = {d:String} AND active "
                        "AND table NOT IN ('schema_migrations', 'metrics', 'metric_rollups') GROUP BY table "
                        "ORDER BY table", parameters={"d": DATABASE}).result_rows
    return ", ".join(f"{table} {count}" for table, count in rows)


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=20, help="points per metric per run")
    parser.add_argument("--searches", type=int, default=200)
    parser.add_argument("--extra-keys", type=int, default=0,
                        help="more metrics, params and tags per run besides the searched ones (real runs log dozens)")
    parser.add_argument("--versions", type=int, default=1, help="stored versions per run (RUNNING ... FINISHED)")
    parser.add_argument("--merged", action="store_true",
                        help="merge every table's parts first (the state after background merges caught up)")
    args = parser.parse_args()
    with seeded_database(DATABASE, lambda c: seed(c, args.runs, args.steps, args.extra_keys, args.versions), "bench-search-") as client:
        print(f"{args.runs} runs, {client.command(f'SELECT count() FROM {DATABASE}.metrics')} metric points")
        if args.merged:
            for (table,) in client.query("SELECT name FROM system.tables WHERE database = {d:String} AND "
                                         "engine LIKE '%MergeTree'", parameters={"d": DATABASE}).result_rows:
                client.command(f"OPTIMIZE TABLE {DATABASE}.`{table}` FINAL")
        print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        for name, spec in CASES.items():
            print(f"active parts: {parts(client)}")
            time_case(client, 5, spec)
            wall, cpu = time_case(client, args.searches, spec)
            print(f"{name:52s} wall p50 {statistics.median(wall):6.1f}  p99 {percentile(wall, 0.99):6.1f}  "
                  f"max {wall[-1]:6.1f} ms | cpu p50 {statistics.median(cpu):6.1f}  "
                  f"p99 {percentile(cpu, 0.99):6.1f} ms")
        print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
