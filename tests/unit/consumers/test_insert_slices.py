"""Cutting a metrics batch into inserts without splitting an event."""

import numpy as np

from trackstream.consumers.store import insert_slices


def rows(*events: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(partition, offset, points) per event, in order."""
    partitions = np.concatenate([np.full(n, p) for p, _, n in events])
    offsets = np.concatenate([np.full(n, o) for _, o, n in events])
    return partitions, offsets


def test_slices_end_on_event_boundaries_across_partitions():
    partitions, offsets = rows((0, 1, 100), (0, 2, 100), (1, 1, 100), (1, 2, 100))
    assert insert_slices(partitions, offsets, 250) == [(0, 200), (200, 400)]


def test_same_offset_on_two_partitions_is_two_events():
    partitions, offsets = rows((0, 7, 100), (1, 7, 100))
    assert insert_slices(partitions, offsets, 150) == [(0, 100), (100, 200)]


def test_an_event_larger_than_one_insert_stays_whole():
    partitions, offsets = rows((0, 1, 10), (0, 2, 300), (0, 3, 10))
    assert insert_slices(partitions, offsets, 100) == [(0, 10), (10, 310), (310, 320)]


def test_everything_fits_in_one_insert():
    partitions, offsets = rows((0, 1, 10), (1, 1, 10))
    assert insert_slices(partitions, offsets, 100) == [(0, 20)]
    assert insert_slices(np.array([]), np.array([]), 100) == []
