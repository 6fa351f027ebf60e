"""Forked children (multiprocessing's fork start method, as DataLoader workers use, and a bare
os.fork) log while their parent logs: every point reaches Kafka exactly once, each process writes
under its own writer id, no two events share a (writer, aggregate, seq), and only the parent ends
the run."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections import Counter
from pathlib import Path

from confluent_kafka import Consumer

from trackstream.config import Settings
from trackstream.infra.topics import ensure_topics
from trackstream.schemas import MetricBatch, default_codec

REPO = Path(__file__).resolve().parents[2]
POINTS = 300

SCRIPT = textwrap.dedent("""
    import multiprocessing as mp
    import os
    import sys

    import trackstream as ts
    from trackstream.producer.client import TrackingClient

    N = {points}

    def child(name):
        for i in range(N):
            ts.log_metric(name, float(i), step=i)
        # no flush: a multiprocessing child exits through os._exit; the SDK's finalizer flushes

    ts.set_client(TrackingClient(linger_s=3600))  # the parent's points stay buffered across the forks
    run = ts.start_run()
    for i in range(N):
        ts.log_metric("parent", float(i), step=i)
    ctx = mp.get_context("fork")
    workers = [ctx.Process(target=child, args=(f"worker{{k}}",)) for k in range(2)]
    for w in workers:
        w.start()
    pid = os.fork()
    if pid == 0:  # a bare fork that exits normally: atexit flushes, and must not end the parent's run
        child("forked")
        sys.exit(0)
    for i in range(N, 2 * N):
        ts.log_metric("parent", float(i), step=i)
    for w in workers:
        w.join(60)
        assert w.exitcode == 0, w.exitcode
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    ts.end_run()
    assert ts.flush(60) == 0
    print(run.run_id)
""").format(points=POINTS)


def read_topic(bootstrap: str, topic: str, run_id: str, expected_points: int, timeout: float = 60):
    codec = default_codec()
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    events: dict[str, dict] = {}  # event id -> record (re-sent copies collapse)
    deadline = time.monotonic() + timeout
    quiet_until = None
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.3)
            if msg is None or msg.error():
                if quiet_until is not None and time.monotonic() > quiet_until:
                    break
                continue
            event = codec.decode(msg.value())
            if event.record.get("run_id") == run_id:
                events[event.record["event_id"]] = {"type": event.event_type, **event.record}
            points = sum(len(MetricBatch.from_record(r)) for r in events.values() if r["type"] == "metrics_logged")
            if points >= expected_points and quiet_until is None:
                quiet_until = time.monotonic() + 2  # catch any extra copy that trails
    finally:
        consumer.close()
    return list(events.values())


def test_forked_children_log_exactly_once_under_their_own_writer_ids(kafka_bootstrap, tmp_path, unique_name):
    settings = Settings(home=tmp_path, kafka_bootstrap=kafka_bootstrap, topic=unique_name, partitions=2)
    ensure_topics(settings)
    env = dict(os.environ, TRACKSTREAM_HOME=str(tmp_path), TRACKSTREAM_KAFKA=kafka_bootstrap,
               TRACKSTREAM_TOPIC=unique_name, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    run_id = done.stdout.split()[-1]
    expected = {("parent", i) for i in range(2 * POINTS)}
    expected |= {(name, i) for name in ("worker0", "worker1", "forked") for i in range(POINTS)}
    events = read_topic(kafka_bootstrap, unique_name, run_id, len(expected))

    clashes = Counter((e["writer_id"], e["seq"]) for e in events)
    assert [key for key, n in clashes.items() if n > 1] == [], "two events share a writer id and sequence number"
    points = Counter()
    writers_by_key: dict[str, set[str]] = {}
    for e in (e for e in events if e["type"] == "metrics_logged"):
        batch = MetricBatch.from_record(e)
        for key, step in zip(batch.key_column(), batch.steps):
            points[(key, int(step))] += 1
            writers_by_key.setdefault(key, set()).add(e["writer_id"])
    assert set(points) == expected
    assert [p for p, n in points.items() if n > 1] == [], "points arrived more than once"
    assert all(len(w) == 1 for w in writers_by_key.values())
    assert len(set.union(*writers_by_key.values())) == 4, "each process needs its own writer id"
    ends = [e for e in events if e["type"] in ("finalize_requested", "run_status_changed")]
    assert [e["type"] for e in ends] == ["finalize_requested"]
    assert ends[0]["writer_id"] in writers_by_key["parent"]
