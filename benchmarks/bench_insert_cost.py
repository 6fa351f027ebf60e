"""What the worker's inserts cost with and without the search layout (migration 012), in-process.

Migration 012 adds materialized views that copy runs, params, tags and latest metrics into tables
ordered for search. This times the worker's two insert shapes on the embedded engine, on a database
migrated fully and on one migrated up to 011, alternately:

- sustained metric ingest: inserts of --rows metric points (4 runs x 2 keys, fresh steps each), with
  the worker's insert settings (deduplication token);
- run loading: per insert round, one run version, 3 params and 3 tags for each of --runs-per-round
  new runs, as a batch of runs/create + a small log-batch.

Prints the wall time per insert and the process CPU per insert (the engine's threads included),
amortized over the inserts and the background merges they cause: the clock runs until the
database has no merge left to do.

    python benchmarks/bench_insert_cost.py [--inserts 40] [--rows 100000] [--rounds 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trackstream.consumers.materializer import TABLE_COLUMNS  # noqa: E402
from trackstream.consumers.store import SchemaManager, connect, insert_settings  # noqa: E402

SEARCH_LAYOUT = "012_search_layout"


def migrated(client, database: str, with_layout: bool) -> None:
    schema = SchemaManager(client, database)
    if not with_layout:
        schema.migrations = [m for m in schema.migrations if m.name < SEARCH_LAYOUT]
    schema.migrate()


def metric_inserts(client, database: str, inserts: int, rows: int) -> list[float]:
    wall = []
    runs, keys = 4, 2
    steps = rows // (runs * keys)
    for i in range(inserts):
        n = runs * keys * steps
        offsets = np.arange(n, dtype=np.uint64) + i * n
        table = pa.table({
            "run_id": np.repeat([f"{r:032x}" for r in range(runs)], keys * steps),
            "key": np.tile(np.repeat(["loss", "acc"], steps), runs),
            "step": np.tile(np.arange(i * steps, (i + 1) * steps, dtype=np.int64), runs * keys),
            "timestamp_ms": np.full(n, 1_700_000_000_000 + i, dtype=np.int64),
            "value": np.random.default_rng(i).random(n),
            "src_partition": np.zeros(n, dtype=np.uint32),
            "src_offset": offsets,
        })
        settings = insert_settings("metrics", np.zeros(n, dtype=np.uint32), offsets)
        start = time.perf_counter()
        client.insert_arrow(f"{database}.metrics", table, settings=settings)
        wall.append((time.perf_counter() - start) * 1000)
    return wall


def run_loading_inserts(client, database: str, rounds: int, runs_per_round: int) -> list[float]:
    wall = []
    for i in range(rounds):
        run_ids = [f"{i:016x}{r:016x}" for r in range(runs_per_round)]
        offset = i * 10
        start = time.perf_counter()
        for table, rows in (
                ("params", [[rid, f"p{k}", str(k), 0, "e", 0, offset + k] for rid in run_ids for k in range(3)]),
                ("tags", [[rid, f"t{k}", "v", 0, 0, offset + k] for rid in run_ids for k in range(3)]),
                ("runs", [[rid, "0", rid, "u", "src", "", "RUNNING", i, None, "active", "", [], 0, offset]
                          for rid in run_ids])):
            client.insert(f"{database}.{table}", rows, column_names=list(TABLE_COLUMNS[table]),
                          settings=insert_settings(table, [0] * len(rows), [r[-1] for r in rows]))
        wall.append((time.perf_counter() - start) * 1000)
    return wall


def settled_cpu_ms(client, database: str, start_cpu: float) -> float:
    """Process CPU since ``start_cpu`` once the database's background merges are done."""
    quiet = 0
    while quiet < 3:
        time.sleep(0.2)
        busy = client.command("SELECT count() FROM system.merges WHERE database = {d:String}", parameters={"d": database})
        quiet = quiet + 1 if not busy else 0
    return (time.process_time() - start_cpu) * 1000


def measured(client, database: str, work) -> str:
    start_cpu = time.process_time()
    wall = work()
    cpu = settled_cpu_ms(client, database, start_cpu) / len(wall)
    return f"CPU {cpu:7.2f} ms per insert, merges included | wall p50 {statistics.median(wall):6.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inserts", type=int, default=40, help="metric inserts per schema and pass")
    parser.add_argument("--rows", type=int, default=100_000, help="metric points per insert")
    parser.add_argument("--rounds", type=int, default=200, help="run-loading insert rounds per schema and pass")
    parser.add_argument("--runs-per-round", type=int, default=4)
    parser.add_argument("--passes", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-insert-cost-", ignore_cleanup_errors=True) as home:
        client = connect(f"chdb://{home}/clickhouse")
        for n in range(args.passes):
            for with_layout in (False, True):
                database = f"cost_{'with' if with_layout else 'without'}_{n}"
                migrated(client, database, with_layout)
                label = "with the search layout   " if with_layout else "without the search layout"
                print(f"pass {n + 1} {label}: {args.rows:,}-point metric insert: "
                      + measured(client, database, lambda: metric_inserts(client, database, args.inserts, args.rows)))
                print(f"pass {n + 1} {label}: run-loading round ({args.runs_per_round} runs): "
                      + measured(client, database,
                                 lambda: run_loading_inserts(client, database, args.rounds, args.runs_per_round)))
                client.command(f"DROP DATABASE {database} SYNC")


if __name__ == "__main__":
    main()
