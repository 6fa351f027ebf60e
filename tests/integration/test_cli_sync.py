"""`trackstream sync` delivers what an SDK process spooled to disk while Kafka was unreachable."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from confluent_kafka import Consumer, TopicPartition

from trackstream.schemas import default_codec
from tests.integration.harness import REPO, free_port

OFFLINE_TRAINING = textwrap.dedent("""
    from trackstream.producer.client import TrackingClient
    client = TrackingClient()
    run_id = client.create_run("0", run_name="offline")
    for step in range(500):
        client.log_metric(run_id, "loss", 1.0 / (step + 1), step=step)
    client.set_terminated(run_id)
    print(client.close(timeout=2))
""")


def read_topic(bootstrap: str, topic: str) -> list:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{topic}", "enable.auto.commit": False})
    metadata = consumer.list_topics(topic, timeout=10).topics[topic]
    ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in metadata.partitions}
    consumer.assign([TopicPartition(topic, p, 0) for p, end in ends.items() if end > 0])
    messages, want = [], sum(ends.values())
    while len(messages) < want:
        messages += [m for m in consumer.consume(1000, timeout=2) if not m.error()]
    consumer.close()
    return [default_codec().decode(m.value()) for m in messages]


def test_events_spooled_while_offline_are_delivered_by_sync(kafka_bootstrap, tmp_path, unique_name):
    env = dict(os.environ, TRACKSTREAM_HOME=str(tmp_path), TRACKSTREAM_TOPIC=unique_name,
               TRACKSTREAM_KAFKA=f"127.0.0.1:{free_port()}", TRACKSTREAM_DISABLE_PROVENANCE="1")
    offline = subprocess.run([sys.executable, "-c", OFFLINE_TRAINING], env=env, cwd=REPO, capture_output=True,
                             text=True, timeout=120)
    assert offline.returncode == 0, offline.stderr
    assert int(offline.stdout.split()[-1]) > 0  # close() reported events still pending: nothing reached Kafka
    assert any((tmp_path / "spool").iterdir())

    env["TRACKSTREAM_KAFKA"] = kafka_bootstrap
    synced = subprocess.run([sys.executable, "-m", "trackstream.cli", "sync"], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=180)
    assert synced.returncode == 0, synced.stderr
    assert "delivered" in synced.stdout

    events = read_topic(kafka_bootstrap, unique_name)
    types = [e.event_type for e in events]
    assert types[0] == "run_created" and types[-1] == "finalize_requested"
    points = sum(e.record["count"] for e in events if e.event_type == "metrics_logged")
    assert points == 500
    seqs = [e.record["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
