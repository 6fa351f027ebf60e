"""The mlflow client's ``log_metric`` and ``log_batch``: through the trackstream:// plugin (SDK ->
Kafka) against the same client over REST (http:// -> the gateway), on one trackstream server.

Four cases, each a single-threaded loop of the unmodified ``MlflowClient`` for --seconds:

  plugin log_metric   MlflowClient("trackstream://...").log_metric(run, "loss", v, step=i)
  plugin log_batch    .log_batch(run, metrics=[--batch Metric objects])  (MLflow's limit is 1000)
  rest   log_metric   MlflowClient("http://...") — the same calls, each one a REST request
  rest   log_batch

Per case: calls/s and points/s of the loop, p50 / p99 µs per call (every call timed), then for the
plugin the time ``flush`` needs until Kafka acknowledged every event, and "acked points/s" over
loop + flush (a REST call returns only after the gateway's event is acknowledged, so that is the
like-for-like figure). With --verify (default) the script then waits until the server has
materialized every point of the case (counted in ClickHouse) so a lost point fails the run.

    python benchmarks/bench_mlflow_plugin.py [--bootstrap 127.0.0.1:19092] [--seconds 30] [--json out.json]

Starts its own ``trackstream server`` (temporary home, own topic and database) on the broker.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_mlflow_compat import Http, TrackstreamServer, percentile  # noqa: E402

from trackstream.config import Settings  # noqa: E402


def timed_loop(seconds: float, call: Callable[[int], int]) -> tuple[int, int, float, list[float]]:
    """Call ``call(i)`` (returns points it logged) until ``seconds`` pass: (calls, points, elapsed s, µs per call)."""
    clock = time.perf_counter_ns
    latencies: list[float] = []
    calls = points = 0
    start = clock()
    deadline = start + int(seconds * 1e9)
    now = start
    while now < deadline:
        points += call(calls)
        after = clock()
        latencies.append((after - now) / 1000)
        now = after
        calls += 1
    return calls, points, (now - start) / 1e9, latencies


def run_case(uri: str, op: str, seconds: float, batch: int) -> dict[str, Any]:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment(f"bench-{op}-{uri.split(':')[0]}-{time.time_ns()}")
    run_id = client.create_run(experiment_id).info.run_id
    key = "loss"
    if op == "log_metric":
        def call(i: int) -> int:
            client.log_metric(run_id, key, 1.0 / (i + 1), step=i)
            return 1
    else:
        def call(i: int) -> int:
            stamp = int(time.time() * 1000)
            client.log_batch(run_id, metrics=[Metric(key, float(j), stamp, i * batch + j) for j in range(batch)])
            return batch

    calls, points, elapsed, latencies = timed_loop(seconds, call)
    result: dict[str, Any] = {
        "transport": uri.split(":")[0], "op": op, "run_id": run_id, "key": key, "calls": calls, "points": points,
        "seconds": round(elapsed, 2), "calls_per_s": round(calls / elapsed), "points_per_s": round(points / elapsed),
        "p50_us": round(percentile(latencies, 50), 1), "p99_us": round(percentile(latencies, 99), 1),
    }
    store = client._tracking_client.store
    if hasattr(store, "client"):  # the plugin: wait until Kafka acknowledged everything
        started = time.perf_counter()
        pending = store.client.flush(600)
        flush_s = time.perf_counter() - started
        result.update(flush_s=round(flush_s, 2), unacked_after_flush=pending,
                      acked_points_per_s=round(points / (elapsed + flush_s)))
    else:
        result["acked_points_per_s"] = result["points_per_s"]
    client.set_terminated(run_id)
    return result


def wait_materialized(server: TrackstreamServer, http: Http, case: dict[str, Any], timeout: float) -> float:
    started = time.perf_counter()
    server.wait_readable(http, case["run_id"], case["key"], case["points"], timeout)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", default=Settings.from_env().kafka_bootstrap)
    parser.add_argument("--seconds", type=float, default=30.0, help="how long each case runs (default 30)")
    parser.add_argument("--batch", type=int, default=1000, help="metrics per log_batch call (default 1000)")
    parser.add_argument("--no-verify", action="store_true", help="skip waiting for every point to be materialized")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-plugin-") as workdir:
        server = TrackstreamServer(Path(workdir), args.bootstrap)
        print(f"server up in {server.start(120):.1f} s at {server.url}", flush=True)
        os.environ.update(TRACKSTREAM_KAFKA=args.bootstrap, TRACKSTREAM_TOPIC=server.topic,
                          TRACKSTREAM_HOME=str(server.home))
        http = Http(server.url)
        results = []
        try:
            for uri in (f"trackstream://127.0.0.1:{server.port}", server.url):
                for op in ("log_metric", "log_batch"):
                    case = run_case(uri, op, args.seconds, args.batch)
                    if not args.no_verify:
                        case["materialized_after_s"] = round(wait_materialized(server, http, case, 900), 2)
                    results.append(case)
                    print(json.dumps(case), flush=True)
        finally:
            http.close()
            server.stop()
            server.delete_topics()
    print(f"\n{'case':<24}{'calls/s':>10}{'points/s':>12}{'acked pts/s':>13}{'p50 µs':>12}{'p99 µs':>12}")
    for r in results:
        print(f"{r['transport'] + ' ' + r['op']:<24}{r['calls_per_s']:>10,}{r['points_per_s']:>12,}"
              f"{r['acked_points_per_s']:>13,}{r['p50_us']:>12,.1f}{r['p99_us']:>12,.1f}")
    print(f"load average (1 min) at start {load_before:.1f}, at end {os.getloadavg()[0]:.1f}, on {os.cpu_count()} CPUs")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
