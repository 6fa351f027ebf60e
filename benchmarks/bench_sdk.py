"""SDK benchmark: the cost of ``log_metric`` and points/s from one process into a real broker.

  a) µs per ``log_metric`` call (explicit client, then the fluent ``producer.log_metric``): a
     single-threaded loop of --calls calls into a writer that discards events (the SDK's own
     cost: validation, timestamp, buffering and building columnar batches; no encoding, no I/O),
     timed in chunks of 10,000 calls; prints p50 / p10 / p90 of the chunks and the overall mean.
  b) points/s through ``log_metric_arrays`` (the numpy bulk path) into Kafka: --bulk-points in
     batches of --batch, clock stopped when ``flush`` returns 0 (every event acknowledged).
  c) points/s through plain ``log_metric`` calls into Kafka, same stop condition.

Events go to topic ``bench.sdk`` (created with 10 min retention: benchmark data is garbage);
the writer's spool lives in a temporary TRACKSTREAM_HOME.

    python benchmarks/bench_sdk.py [--bootstrap 127.0.0.1:19092]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import trackstream as ts  # noqa: E402
from trackstream.producer.client import TrackingClient  # noqa: E402
from trackstream.config import Settings  # noqa: E402

TOPIC = "bench.sdk"
POINT_BYTES = 4 + 8 + 8 + 8  # key index, step, timestamp, value


class DiscardWriter:
    """Encodes nothing and sends nothing: isolates the SDK's Python cost."""

    writer_id = "bench-discard"

    def append(self, event_type: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        return dict(fields)

    def flush(self, timeout: float = 30.0) -> int:
        return 0

    def close(self, timeout: float = 30.0) -> int:
        return 0


def ensure_topic(bootstrap: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    if TOPIC in admin.list_topics(timeout=10).topics:
        return
    topic = NewTopic(TOPIC, num_partitions=4, replication_factor=1,
                     config={"retention.ms": "600000", "max.message.bytes": "8388608"})
    for future in admin.create_topics([topic], request_timeout=15).values():
        try:
            future.result(15)
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise


def bench_call_cost(calls: int, fluent_api: bool, chunk: int = 10_000) -> tuple[list[float], float]:
    """(ns per call of each chunk of ``chunk`` calls, mean ns per call including batch building)."""
    client = TrackingClient(Settings(kafka_bootstrap="unused"), writer=DiscardWriter())
    per_chunk = []
    step = 0
    ts.set_client(client)
    run = ts.start_run(run_name="bench", experiment_id="1")
    try:
        if fluent_api:
            log_metric = ts.log_metric
            args: tuple = ("train/loss", 0.5)
        else:
            log_metric = client.log_metric
            args = (run.run_id, "train/loss", 0.5)
        begin = time.perf_counter_ns()
        for _ in range(calls // chunk):
            start = time.perf_counter_ns()
            for _ in range(chunk):
                log_metric(*args, step)
                step += 1
            per_chunk.append((time.perf_counter_ns() - start) / chunk)
        client.flush()
        mean = (time.perf_counter_ns() - begin) / step
    finally:
        ts.end_run()
        ts.set_client(None)
        client.close()
    return per_chunk, mean


def timed_until_acknowledged(settings: Settings, run_name: str,
                             log: Callable[[TrackingClient, str], None]) -> tuple[float, float]:
    """Run ``log(client, run_id)`` on a fresh run; (seconds until every event is acknowledged,
    seconds spent in ``log``)."""
    client = TrackingClient(settings)
    try:
        run_id = client.create_run(run_name=run_name, provenance=False)
        assert client.flush(30) == 0
        start = time.perf_counter()
        log(client, run_id)
        appended = time.perf_counter() - start
        pending = client.flush(120)
        elapsed = time.perf_counter() - start
        if pending:
            raise SystemExit(f"{pending} events still unacknowledged after 120 s")
        return elapsed, appended
    finally:
        client.close()


def bench_bulk(settings: Settings, total: int, batch: int) -> tuple[float, float]:
    values = np.random.default_rng(0).standard_normal(batch)
    stamps = np.full(batch, time.time_ns() // 1_000_000, dtype=np.int64)

    def log(client: TrackingClient, run_id: str) -> None:
        for first in range(0, total, batch):
            client.log_metric_arrays(run_id, "train/loss", values, np.arange(first, first + batch), stamps)

    return timed_until_acknowledged(settings, "bench-bulk", log)


def bench_calls(settings: Settings, calls: int) -> tuple[float, float]:
    def log(client: TrackingClient, run_id: str) -> None:
        log_metric = client.log_metric
        for step in range(calls):
            log_metric(run_id, "train/loss", 0.5, step)

    return timed_until_acknowledged(settings, "bench-calls", log)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", default=os.environ.get("TRACKSTREAM_KAFKA", "127.0.0.1:19092"))
    parser.add_argument("--calls", type=float, default=1e6, help="log_metric calls for (a)")
    parser.add_argument("--bulk-points", type=float, default=20e6, help="points for (b)")
    parser.add_argument("--batch", type=int, default=50_000, help="points per log_metric_arrays call in (b)")
    parser.add_argument("--kafka-calls", type=float, default=2e6, help="log_metric calls for (c)")
    args = parser.parse_args()
    print(f"host: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; broker {args.bootstrap}")

    for name, fluent_api in (("TrackingClient.log_metric", False), ("producer.log_metric (fluent)", True)):
        chunks, mean = bench_call_cost(int(args.calls), fluent_api)
        q = statistics.quantiles(chunks, n=10)
        print(f"(a) {name}, {int(args.calls):,} calls, discarding writer: p50 {statistics.median(chunks) / 1000:.2f} "
              f"µs/call (p10 {q[0] / 1000:.2f}, p90 {q[-1] / 1000:.2f} over chunks of 10,000; "
              f"mean {mean / 1000:.2f} incl. building batches)")

    ensure_topic(args.bootstrap)
    with tempfile.TemporaryDirectory(prefix="bench-sdk-") as home:
        os.environ["TRACKSTREAM_HOME"] = home
        settings = Settings(home=Path(home), kafka_bootstrap=args.bootstrap, topic=TOPIC)

        total = int(args.bulk_points) // args.batch * args.batch
        elapsed, appended = bench_bulk(settings, total, args.batch)
        print(f"(b) log_metric_arrays -> Kafka, {total:,} points in batches of {args.batch:,}: "
              f"{total / elapsed:,.0f} points/s, {total * POINT_BYTES / elapsed / 1e6:,.0f} MB/s of column data "
              f"({elapsed:.1f} s until acknowledged; appends took {appended:.1f} s)")

        calls = int(args.kafka_calls)
        elapsed, appended = bench_calls(settings, calls)
        print(f"(c) log_metric -> Kafka, {calls:,} calls: {calls / elapsed:,.0f} points/s "
              f"({elapsed:.1f} s until acknowledged; {appended / calls * 1e6:.2f} µs/call in the loop)")


if __name__ == "__main__":
    main()
