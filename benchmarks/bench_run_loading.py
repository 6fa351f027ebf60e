"""Run loading against a running server: N client processes, each run = runs/create (a name and
3 tags) then one small log-batch (3 params, 2 metrics), as ``bench_mlflow_compat.py --mode
sustained`` loads them, without the rest of that benchmark. Prints the wall time and the p50/p99
of both calls.

    python benchmarks/bench_run_loading.py http://127.0.0.1:5055 [--runs 2000] [--clients 4]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sustained_load  # noqa: E402
from lean_http import Http  # noqa: E402

API = "/api/2.0/mlflow"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    experiment_id = Http(args.url).post(f"{API}/experiments/create", {"name": f"load-{time.time_ns()}"})["experiment_id"]
    reports, wall = sustained_load.run_clients(
        args.clients, sustained_load.run_loading_client,
        lambda i: (args.url, API, experiment_id, list(range(i, args.runs, args.clients)), 1_700_000_000_000),
        timeout=3600)
    for name in ("create", "log_batch"):
        values = sorted(ms for r in reports for ms in r.latencies_ms[name])
        print(f"  {name}: p50 {statistics.median(values):.2f} ms, p99 {values[int(len(values) * 0.99)]:.2f} ms")
    print(f"{args.runs:,} runs over {args.clients} client processes in {wall:.2f} s")


if __name__ == "__main__":
    main()
