"""The SDK's spool on a filesystem that really runs out of space (a 512 KiB tmpfs mounted for
the test): no metric point the flusher drained is lost, and the failure is loud."""

from __future__ import annotations

import errno
import subprocess
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer

from trackstream.config import Settings
from trackstream.errors import MetricsNotSpooled
from trackstream.infra.topics import ensure_topics
from trackstream.producer.client import TrackingClient
from trackstream.producer.kafka_writer import EventWriter, SpoolWarning
from trackstream.schemas import MetricBatch, default_codec

POINTS = 2000


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a size-limited tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(directory: Path) -> None:
    """Write a filler file until the filesystem refuses with ENOSPC."""
    with open(directory / "filler", "wb", buffering=0) as out:
        chunk = b"x" * 4096
        while True:
            try:
                out.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
        while True:  # the last partial block
            try:
                out.write(b"x")
            except OSError:
                return


def delivered_points(bootstrap: str, topic: str, run_id: str, timeout: float = 6) -> list[int]:
    """The steps of every metric point of ``run_id`` in the topic (duplicates collapsed)."""
    codec = default_codec()
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    seen: dict[str, list[int]] = {}
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            event = codec.decode(msg.value())
            if event.event_type == "metrics_logged" and event.record["run_id"] == run_id:
                seen[event.record["event_id"]] = [int(s) for s in MetricBatch.from_record(event.record).steps]
    finally:
        consumer.close()
    return sorted(step for steps in seen.values() for step in steps)


def test_a_full_disk_keeps_every_drained_point_and_flush_raises_naming_the_spool(kafka_bootstrap, small_disk,
                                                                                   unique_name):
    settings = Settings(home=small_disk.parent, kafka_bootstrap=kafka_bootstrap, topic=unique_name, partitions=1)
    ensure_topics(settings)
    spool_dir = small_disk / "spool"
    writer = EventWriter(kafka_bootstrap, unique_name, spool_dir=spool_dir, deliver_leftovers=False)
    client = TrackingClient(settings, writer=writer, linger_s=0.02)
    run_id = uuid.uuid4().hex
    try:
        fill(small_disk)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for step in range(POINTS):
                client.log_metric(run_id, "loss", 1.0 / (step + 1), step=step)
                if step % 100 == 0:
                    time.sleep(0.03)  # let the flusher and the sender run into the full disk
            deadline = time.monotonic() + 10
            while client.failed_sends == 0 and time.monotonic() < deadline:
                time.sleep(0.02)
        assert client.failed_sends > 0, "the spool never refused a write: the disk did not fill up"
        assert any(issubclass(w.category, SpoolWarning) and "No space left on device" in str(w.message)
                   for w in caught)
        with pytest.raises(MetricsNotSpooled) as raised:
            client.flush(10)
        assert str(spool_dir) in str(raised.value) and "No space left on device" in str(raised.value)
        kept = client.pending_points
        assert kept > 0
        # every point is either in Kafka (sent before the disk filled) or still held by the client
        delivered = delivered_points(kafka_bootstrap, unique_name, run_id)
        print(f"{len(delivered)} point(s) delivered before the disk filled, {kept} kept in memory, "
              f"{client.failed_sends} refused send(s)")
        assert len(delivered) + kept == POINTS
        assert delivered == list(range(len(delivered)))  # the delivered ones are the first, in order
    finally:
        with pytest.raises(MetricsNotSpooled):
            client.close(5)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SpoolWarning)  # the event the full disk holds stays undelivered
            writer.close(5)  # the test's writer: the client only closes writers it made
