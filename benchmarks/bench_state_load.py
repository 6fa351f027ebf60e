"""Cost of the worker's state read for a batch of runs it has not seen yet, on the embedded engine.

Before the materializer applies a batch it reads, from ClickHouse, the state of every run (or
experiment, model) the batch names that is not in memory: its latest run row, params, datasets,
artifacts and writers' sequence numbers, as of the batch's first offset on each partition. This
builds a database of ``--runs`` runs spread over 4 partitions (real events through the real
Materializer and ClickHouseSink), then times that read for batches of ``--batch`` runs:

  * one read per partition the batch spans (how the worker read state before), and
  * one read for the whole batch, each query covering every partition at once (how it reads now).

    python benchmarks/bench_state_load.py [--runs 4000] [--batch 8] [--rounds 30]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trackstream.consumers.materializer import Materializer, SourceMessage  # noqa: E402
from trackstream.consumers.store import (ClickHouseSink, ClickHouseStateReader, SchemaManager,  # noqa: E402
                                         connect)
from trackstream.schemas import MetricBatch, default_codec  # noqa: E402
from trackstream.schemas.envelope import WriterIdentity  # noqa: E402

PARTITIONS = 4


def build(client, database: str, runs: int) -> list[tuple[str, int, int]]:
    """``runs`` runs, each created with 3 params and 2 metric points; returns (run_id, partition, offset)."""
    codec, writer = default_codec(), WriterIdentity()
    points = MetricBatch(["acc", "loss"], np.array([0, 1]), np.zeros(2), np.ones(2), np.full(2, 0.5))
    offsets = [0] * PARTITIONS
    messages, created = [], []
    for i in range(runs):
        run_id, partition = uuid.uuid4().hex, i % PARTITIONS
        for event_type, fields in (
                ("run_created", {"run_id": run_id, "experiment_id": "0", "user_id": "u", "source_name": "bench",
                                 "parent_run_id": None, "start_time_ms": 1, "run_name": f"r{i}", "tags": []}),
                ("params_set", {"run_id": run_id, "params": [{"key": k, "value": str(i)} for k in ("lr", "bs", "opt")]}),
                ("metrics_logged", {"run_id": run_id, **points.to_record_fields()})):
            agg, record = writer.stamp(event_type, fields)
            messages.append(SourceMessage(partition, offsets[partition], codec.encode(event_type, record), agg.encode()))
            if event_type == "run_created":
                created.append((run_id, partition, offsets[partition]))
            offsets[partition] += 1
    materializer, sink = Materializer(ClickHouseStateReader(client, database)), ClickHouseSink(client, database)
    for start in range(0, len(messages), 3000):
        sink.write(materializer.process(messages[start:start + 3000]))
    return created


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        client = connect(f"chdb://{home}/ch")
        SchemaManager(client, "bench").migrate()
        started = time.perf_counter()
        runs = build(client, "bench", args.runs)
        print(f"{args.runs:,} runs materialized in {time.perf_counter() - started:.1f} s")
        reader, rng = ClickHouseStateReader(client, "bench"), random.Random(7)
        per_partition, per_batch, spans = [], [], []
        for _ in range(args.rounds):
            batch = rng.sample(runs, args.batch)
            before = {p: o for _, p, o in sorted(batch, key=lambda r: r[2])}  # each partition's last creation
            aggregates = {run_id: "run" for run_id, _, _ in batch}
            t0 = time.perf_counter()
            for partition, offset in before.items():
                reader.load({partition: offset + 1}, {r: "run" for r, p, _ in batch if p == partition})
            t1 = time.perf_counter()
            loaded = reader.load({p: o + 1 for p, o in before.items()}, aggregates)
            t2 = time.perf_counter()
            assert all(state.run is not None for state in loaded.values()) and len(loaded) >= 1
            per_partition.append((t1 - t0) * 1000)
            per_batch.append((t2 - t1) * 1000)
            spans.append(len(before))
        print(f"state read for {args.batch} runs over {statistics.mean(spans):.1f} partitions on average, median of {args.rounds}: "
              f"one read per partition {statistics.median(per_partition):.1f} ms, "
              f"one read per batch {statistics.median(per_batch):.1f} ms")


if __name__ == "__main__":
    main()
