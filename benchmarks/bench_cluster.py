"""Scale-out figures for docs/deploy.md's capacity model: points/s per `trackstream worker` and per
ClickHouse insert, against a real ClickHouse server (infra/clickhouse_server.py) and the broker at
--bootstrap.

For each worker count: a backlog of --points metric points (5,000-point batches over 8 runs) is
produced into a fresh 4-partition topic first, then that many `trackstream worker` processes start;
the clock runs from the first stored point to the last, so start-up is not counted. Per insert:
the stored rows inserted again as one Arrow block over HTTP (the worker's metrics insert, alone).

    python benchmarks/bench_cluster.py --bootstrap 127.0.0.1:29092 --workers 1 2
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import clickhouse_connect  # noqa: E402

from trackstream.config import Settings  # noqa: E402
from trackstream.infra.clickhouse_server import ClickHouseServer  # noqa: E402
from trackstream.infra.cluster import RoleProcess, role_env  # noqa: E402
from trackstream.infra.topics import ensure_topics  # noqa: E402
from trackstream.producer.kafka_writer import EventWriter  # noqa: E402
from trackstream.schemas import MetricBatch  # noqa: E402

RUNS = 8
BATCH = 5_000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def produce_backlog(settings: Settings, points: int, spool: Path) -> None:
    writer = EventWriter(settings.kafka_bootstrap, settings.topic, writer_id=f"bench-{uuid.uuid4().hex[:8]}",
                         spool_dir=spool)
    run_ids = [uuid.uuid4().hex for _ in range(RUNS)]
    for run_id in run_ids:
        writer.append("run_created", {"run_id": run_id, "experiment_id": "0", "user_id": "bench", "source_name": "b",
                                      "parent_run_id": None, "start_time_ms": 1, "run_name": run_id[:6], "tags": []})
    rng = np.random.default_rng(1)
    for b in range(points // (BATCH * RUNS)):
        for run_id in run_ids:
            batch = MetricBatch(["loss", "acc"], (np.arange(BATCH) % 2).astype(np.uint32),
                                np.arange(b * BATCH, (b + 1) * BATCH), np.full(BATCH, 1_700_000_000_000 + b),
                                rng.standard_normal(BATCH))
            writer.append("metrics_logged", {"run_id": run_id, **batch.to_record_fields()})
    assert writer.flush(300) == 0
    writer.close()


def measure(base: Settings, server: ClickHouseServer, workers: int, points: int, home: Path) -> dict:
    name = uuid.uuid4().hex[:8]
    settings = Settings(home=home, kafka_bootstrap=base.kafka_bootstrap, clickhouse_dsn=server.dsn,
                        database=f"bench_{name}", topic=f"bench.cluster.{name}", dead_letter_topic=f"bench.cluster.{name}.dlq",
                        consumer_group=f"bench-{name}", partitions=4)
    ensure_topics(settings)
    total = (points // (BATCH * RUNS)) * BATCH * RUNS
    produce_backlog(settings, points, home / "spools" / name)  # its own root: the SDK tidies spool siblings
    roles = [RoleProcess("worker", home / f"{name}-worker-{n}", role_env(settings, home / f"{name}-worker-{n}", 0))
             for n in range(workers)]
    client = clickhouse_connect.get_client(dsn=server.dsn)
    for role in roles:
        role.start()
    try:
        first_seen = last_seen = None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            try:
                stored = int(client.command(f"SELECT count() FROM {settings.database}.metrics"))
            except Exception:
                stored = 0
            now = time.perf_counter()
            if stored and first_seen is None:
                first_seen, first_count = now, stored
            if stored >= total:
                last_seen = now
                break
            time.sleep(0.05)
        if last_seen is None:
            raise SystemExit(f"{workers} worker(s) did not store {total} points within 600 s")
        fresh = freshness(settings, client, home / "spools" / f"{name}-fresh")
        inserts = insert_costs(client, settings.database)
        (stored_bytes,), = client.query(
            "SELECT sum(data_compressed_bytes) FROM system.parts WHERE active AND database = {db:String} "
            "AND table = 'metrics'", parameters={"db": settings.database}).result_rows
    finally:
        for role in roles:
            role.stop()
    rate = (total - first_count) / (last_seen - first_seen)
    return {"workers": workers, "points": total, "points_per_s": rate, "per_worker": rate / workers, "inserts": inserts,
            "bytes_per_point": stored_bytes / total, "freshness": fresh}


def freshness(settings: Settings, client, spool: Path, batches: int = 40, points: int = 2_000) -> tuple[float, float]:
    """Logged (acknowledged by Kafka) -> visible to a query on the server, one batch at a time,
    with the workers idle otherwise: (p50, p99) in ms."""
    writer = EventWriter(settings.kafka_bootstrap, settings.topic, writer_id=f"fresh-{uuid.uuid4().hex[:8]}",
                         spool_dir=spool)
    run_id = uuid.uuid4().hex
    writer.append("run_created", {"run_id": run_id, "experiment_id": "0", "user_id": "bench", "source_name": "b",
                                  "parent_run_id": None, "start_time_ms": 1, "run_name": "fresh", "tags": []})
    latencies = []
    for b in range(batches):
        batch = MetricBatch(["loss"], np.zeros(points, dtype=np.uint32), np.arange(b * points, (b + 1) * points),
                            np.full(points, 1_700_000_000_000 + b), np.ones(points))
        writer.append("metrics_logged", {"run_id": run_id, **batch.to_record_fields()})
        assert writer.flush(30) == 0
        started = time.perf_counter()
        want = (b + 1) * points
        while int(client.command(f"SELECT count() FROM {settings.database}.metrics WHERE run_id = '{run_id}'")) < want:
            time.sleep(0.005)
        latencies.append((time.perf_counter() - started) * 1000)
    writer.close()
    latencies.sort()
    return latencies[len(latencies) // 2], latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]


def insert_costs(client, database: str, repeats: int = 5) -> dict[int, tuple[float, float]]:
    """The metrics insert a worker makes, alone: Arrow blocks of the stored rows into a copy of the
    table over HTTP. Per block size: (median ms per insert, points/s)."""
    client.command(f"CREATE TABLE {database}.metrics_insert_bench AS {database}.metrics")
    costs = {}
    for rows in (10_000, 100_000, 1_000_000):
        block = client.query_arrow(f"SELECT * FROM {database}.metrics LIMIT {rows}")
        durations = []
        for _ in range(repeats):
            started = time.perf_counter()
            client.insert_arrow(f"{database}.metrics_insert_bench", block)
            durations.append(time.perf_counter() - started)
        median = sorted(durations)[len(durations) // 2]
        costs[block.num_rows] = (median * 1000, block.num_rows / median)
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", default="127.0.0.1:29092")
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    scratch = Path(__file__).resolve().parents[1] / "var"
    scratch.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-cluster-", dir=scratch) as tmp:
        home = Path(tmp)
        server = ClickHouseServer(home, http_port=free_port(), tcp_port=free_port())
        server.start()
        try:
            for workers in args.workers:
                r = measure(Settings(kafka_bootstrap=args.bootstrap), server, workers, args.points, home)
                print(f"{r['workers']} worker(s): {r['points']:,} points at {r['points_per_s']:,.0f} points/s "
                      f"({r['per_worker']:,.0f} per worker); {r['bytes_per_point']:.1f} bytes/point compressed in "
                      f"ClickHouse; freshness p50 {r['freshness'][0]:.0f} ms, p99 {r['freshness'][1]:.0f} ms", flush=True)
                for rows, (ms, rate) in r["inserts"].items():
                    print(f"  one metrics insert of {rows:,} points: {ms:.0f} ms ({rate:,.0f} points/s)", flush=True)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
