"""Metric points the spool refuses are kept, in order, retried, warned about, counted and raised."""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any, Mapping

import pytest

from trackstream.producer.client import TrackingClient
from trackstream.producer.kafka_writer import SpoolWarning
from trackstream.producer.spool import SpoolError
from trackstream.config import Settings
from trackstream.errors import DeliveryError, MetricsNotSpooled
from tests.unit.producer.test_client import FakeWriter

RUN = "a" * 32


class DiskFullWriter(FakeWriter):
    """Refuses every append while ``full`` is set, as a spool on a full disk does."""

    spool_dir = Path("/spool/of/this/writer")

    def __init__(self) -> None:
        super().__init__()
        self.full = False
        self.refused = 0

    def append(self, event_type: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        if self.full:
            self.refused += 1
            raise SpoolError("writing to /spool/of/this/writer failed: [Errno 28] No space left on device")
        return super().append(event_type, fields)


@pytest.fixture
def writer() -> DiskFullWriter:
    return DiskFullWriter()


def make_client(writer: DiskFullWriter, tmp_path: Path, linger_s: float = 3600.0) -> TrackingClient:
    return TrackingClient(Settings(home=tmp_path), writer=writer, linger_s=linger_s)


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_points_the_flusher_drained_are_kept_when_the_spool_refuses_them(writer, tmp_path):
    client = make_client(writer, tmp_path, linger_s=0.01)
    writer.full = True
    with pytest.warns(SpoolWarning, match="No space left on device"):
        for step in range(100):
            client.log_metric(RUN, "loss", float(step), step=step)
        wait_for(lambda: client.failed_sends >= 2)
    assert client.pending_points == 100
    assert writer.points() == []
    writer.full = False
    assert client.flush() == 0
    assert writer.points() == [(RUN, "loss", step, float(step)) for step in range(100)]
    assert client.pending_points == 0
    client.close()


def test_refused_batches_come_back_ahead_of_newer_points(writer, tmp_path):
    client = make_client(writer, tmp_path)
    client.log_metric(RUN, "loss", 1.0, step=1)
    client.log_metric("b" * 32, "acc", 0.5, step=1)
    writer.full = True
    with pytest.raises(MetricsNotSpooled), warnings.catch_warnings():
        warnings.simplefilter("ignore", SpoolWarning)
        client.flush()
    client.log_metric(RUN, "loss", 2.0, step=2)
    writer.full = False
    client.flush()
    assert [p for p in writer.points() if p[0] == RUN] == [(RUN, "loss", 1, 1.0), (RUN, "loss", 2, 2.0)]
    assert ("b" * 32, "acc", 1, 0.5) in writer.points()
    client.close()


def test_flush_raises_a_delivery_error_naming_the_spool_and_the_cause(writer, tmp_path):
    client = make_client(writer, tmp_path)
    client.log_metric(RUN, "loss", 1.0)
    writer.full = True
    with pytest.raises(MetricsNotSpooled) as raised, warnings.catch_warnings():
        warnings.simplefilter("ignore", SpoolWarning)
        client.flush()
    assert isinstance(raised.value, DeliveryError)
    assert "/spool/of/this/writer" in str(raised.value) and "No space left on device" in str(raised.value)
    assert "1 metric point(s)" in str(raised.value)
    assert client.failed_sends == 1 and client.pending_points == 1
    writer.full = False
    client.close()


def test_close_raises_while_points_are_unrecorded_and_still_closes_the_writer(writer, tmp_path):
    client = make_client(writer, tmp_path)
    client._owns_writer = True  # as when the client built its writer: close() closes it
    client.log_metric(RUN, "loss", 1.0)
    writer.full = True
    with pytest.raises(MetricsNotSpooled, match="closing"), warnings.catch_warnings():
        warnings.simplefilter("ignore", SpoolWarning)
        client.close()
    assert writer.closed


def test_the_warning_is_given_once_per_cause_while_the_counter_counts_every_refusal(writer, tmp_path):
    client = make_client(writer, tmp_path)
    client.log_metric(RUN, "loss", 1.0)
    writer.full = True
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            with pytest.raises(MetricsNotSpooled):
                client.flush()
    assert client.failed_sends == 3
    assert len([w for w in caught if issubclass(w.category, SpoolWarning)]) == 1
    writer.full = False
    client.close()
