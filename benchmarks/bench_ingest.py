"""End-to-end ingest benchmark: producer -> Kafka -> faust worker -> ClickHouse, queryable.

Starts its own `trackstream server` (embedded ClickHouse in a temporary home) against the broker
at --bootstrap, then measures
  1. sustained throughput: N metric points produced while the worker ingests; the clock stops when
     a SQL count on the metrics table sees all of them;
  2. freshness at a paced rate (default 100,000 points/s): for every batch, the time from logging
     to the moment a query sees it; reports p50 / p99 / max;
  3. replay speed: `replay` of the whole log into a fresh database (events/s and points/s).

    python benchmarks/bench_ingest.py --bootstrap 127.0.0.1:19092
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trackstream.producer.kafka_writer import EventWriter  # noqa: E402
from trackstream.schemas import MetricBatch  # noqa: E402
from trackstream.config import Settings, redact_secrets  # noqa: E402
from trackstream.reading import HttpReader  # noqa: E402
from trackstream.server_process import ServerProcess  # noqa: E402


def configure(bootstrap: str, home: Path) -> Settings:
    name = uuid.uuid4().hex[:8]
    os.environ.update({
        "TRACKSTREAM_HOME": str(home), "TRACKSTREAM_KAFKA": bootstrap, "TRACKSTREAM_TOPIC": f"bench.ingest.{name}",
        "TRACKSTREAM_DATABASE": f"bench_{name}", "TRACKSTREAM_CONSUMER_GROUP": f"bench-{name}",
        "TRACKSTREAM_SERVER_PORT": str(5600 + int(name[:3], 16) % 300),
    })
    return Settings.from_env()


def create_run(writer: EventWriter) -> str:
    run_id = uuid.uuid4().hex
    writer.append("run_created", {"run_id": run_id, "experiment_id": "0", "user_id": "bench", "source_name": "bench",
                                  "parent_run_id": None, "start_time_ms": int(time.time() * 1000), "run_name": "bench",
                                  "tags": []})
    return run_id


def points_visible(server: HttpReader, db: str, run_id: str) -> int:
    return server.sql(f"SELECT count() FROM {db}.metrics WHERE run_id = '{run_id}'")["rows"][0][0]


def throughput(writer: EventWriter, server: HttpReader, db: str, total: int, batch_size: int) -> float:
    run_id = create_run(writer)
    values = np.random.default_rng(0).standard_normal(batch_size)
    started = time.perf_counter()
    for i in range(total // batch_size):
        steps = np.arange(i * batch_size, (i + 1) * batch_size)
        batch = MetricBatch(["loss"], np.zeros(batch_size, np.uint32), steps, steps + 1_700_000_000_000, values)
        writer.append("metrics_logged", {"run_id": run_id, **batch.to_record_fields()})
    writer.flush(300)
    produced = time.perf_counter() - started
    while points_visible(server, db, run_id) < total:
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    print(f"  produced {total:,} points in {produced:.2f} s; all queryable after {elapsed:.2f} s")
    return total / elapsed


def freshness(writer: EventWriter, server: HttpReader, db: str, rate: int, seconds: float,
              batches_per_s: int = 10) -> list[float]:
    run_id = create_run(writer)
    per_batch = rate // batches_per_s
    sent_at: list[float] = []
    seen_at: list[float] = []
    next_send = time.perf_counter()
    visible = 0
    n_batches = int(seconds * batches_per_s)
    while len(seen_at) < n_batches:
        now = time.perf_counter()
        if len(sent_at) < n_batches and now >= next_send:
            i = len(sent_at)
            steps = np.arange(i * per_batch, (i + 1) * per_batch)
            batch = MetricBatch(["loss"], np.zeros(per_batch, np.uint32), steps,
                                np.full(per_batch, int(time.time() * 1000)), np.ones(per_batch))
            writer.append("metrics_logged", {"run_id": run_id, **batch.to_record_fields()})
            writer.flush(0)
            sent_at.append(now)
            next_send += 1 / batches_per_s
            continue
        count = points_visible(server, db, run_id)
        checked = time.perf_counter()
        while visible < len(sent_at) and count >= (visible + 1) * per_batch:
            seen_at.append(checked)
            visible += 1
        time.sleep(0.01)
    return [seen - sent for seen, sent in zip(seen_at, sent_at)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", default=os.environ.get("TRACKSTREAM_KAFKA", "127.0.0.1:19092"))
    parser.add_argument("--points", type=int, default=5_000_000)
    parser.add_argument("--batch", type=int, default=50_000, help="points per metrics_logged event")
    parser.add_argument("--rate", type=int, default=100_000, help="paced rate for the freshness test")
    parser.add_argument("--seconds", type=float, default=15.0, help="duration of the freshness test")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="trackstream-bench-") as home:
        settings = configure(args.bootstrap, Path(home))
        from trackstream.infra.topics import ensure_topics

        ensure_topics(settings)
        server_process = ServerProcess(settings)
        server_process.start()
        try:
            server = HttpReader(settings.server_url)
            writer = EventWriter(settings.kafka_bootstrap, settings.topic)
            print(f"broker {settings.kafka_bootstrap}, ClickHouse {redact_secrets(settings.clickhouse_dsn)}, {os.cpu_count()} cores")
            print("1. sustained ingest")
            rate = throughput(writer, server, settings.database, args.points, args.batch)
            print(f"  => {rate:,.0f} metric points/s end to end")
            print(f"2. freshness at {args.rate:,} points/s for {args.seconds:.0f} s")
            lat = sorted(freshness(writer, server, settings.database, args.rate, args.seconds))
            p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
            print(f"  => logged -> queryable: p50 {statistics.median(lat) * 1000:.0f} ms, "
                  f"p99 {p99 * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms over {len(lat)} batches")
            print("3. replay of the whole log")
            state = server.start_replay(f"{settings.database}_replay", None, True)
            while state["state"] == "running":
                time.sleep(0.5)
                state = server.replay_status()
            if state["state"] != "done":
                raise SystemExit(f"replay failed: {state['error']}")
            p = state["report"]["progress"]
            print(f"  => {p['events']:,} events, {p['metric_points']:,} points in {p['elapsed_s']} s: "
                  f"{p['events_per_s']:,.0f} events/s, {p['points_per_s']:,.0f} points/s; "
                  f"equal to live: {state['report']['equal']}")
            writer.close()
        finally:
            server_process.stop()


if __name__ == "__main__":
    main()
