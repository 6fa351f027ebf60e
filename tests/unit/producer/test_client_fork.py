"""What a TrackingClient keeps and drops in a forked child (the hook, called directly)."""

from __future__ import annotations

from trackstream.producer.client import TrackingClient
from trackstream.config import Settings
from tests.unit.producer.test_client import FakeWriter

RUN = "a" * 32


def test_a_forked_child_drops_the_parents_buffered_points_and_keeps_logging(tmp_path):
    writer = FakeWriter()
    client = TrackingClient(Settings(home=tmp_path), writer=writer, linger_s=3600)
    client.log_metric(RUN, "parent", 1.0, step=1)
    parent_flusher = client._flusher
    client._after_fork_in_child()
    assert client.pending_points == 0  # the parent sends them
    assert client._flusher is not parent_flusher and client._flusher.is_alive()
    client.log_metric(RUN, "child", 2.0, step=2)
    client.flush()
    assert writer.points() == [(RUN, "child", 2, 2.0)]
    client.close()
