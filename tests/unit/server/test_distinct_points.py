"""Exact repeats of a point are one point in a history; same step with another value or time is not."""

import math

import numpy as np
import pyarrow as pa

from trackstream.server.reader import distinct_points


def history(points):
    steps, stamps, values = zip(*points)
    return pa.table({"step": np.array(steps, np.int64), "timestamp_ms": np.array(stamps, np.int64),
                     "value": np.array(values, np.float64)})


def test_neighbouring_exact_repeats_collapse_and_near_repeats_stay():
    points = [(1, 10, 0.5), (1, 10, 0.5), (1, 10, 0.6), (1, 11, 0.6), (2, 11, 0.6), (2, 11, math.nan),
              (2, 11, math.nan), (3, 12, -0.0), (3, 12, 0.0)]
    got = distinct_points(history(points))
    assert got.column("step").to_pylist() == [1, 1, 1, 2, 2, 3, 3]
    assert got.column("timestamp_ms").to_pylist() == [10, 10, 11, 11, 11, 12, 12]
    values = got.column("value").to_numpy()
    assert np.array_equal(values, [0.5, 0.6, 0.6, 0.6, math.nan, -0.0, 0.0], equal_nan=True)


def test_a_history_without_repeats_is_returned_as_is():
    table = history([(0, 1, 1.0), (1, 2, 1.0)])
    assert distinct_points(table) is table
    assert distinct_points(history([(0, 1, 1.0)])).num_rows == 1
