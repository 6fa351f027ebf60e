"""The wire formats SDK reads share with the gateway: the written-marks header and the history columns."""

from __future__ import annotations

import numpy as np
import pytest

from trackstream.errors import InvalidInput
from trackstream.read_protocol import (decode_history_columns, encode_history_columns, format_written,
                                       parse_written)


def test_written_marks_round_trip_through_the_header():
    header = format_written("events.abc", {3: 17, 0: 2**62})
    assert header == f"events.abc;0:{2**62},3:17"
    assert parse_written(header) == ("events.abc", {0: 2**62, 3: 17})


def test_a_header_repeating_a_partition_keeps_its_highest_offset():
    assert parse_written("t;1:5,1:9,1:7") == ("t", {1: 9})


@pytest.mark.parametrize("bad, named", [
    ("0:5", "must look like"), ("bad topic;0:1", "must look like"), ("t;0-5", "not <partition>:<offset>"),
    ("t;-1:5", "not <partition>:<offset>"), ("t;0:x", "not <partition>:<offset>"),
    (f"t;0:{2**63}", "out of range"),
])
def test_a_malformed_header_is_refused_naming_what_is_wrong(bad, named):
    with pytest.raises(InvalidInput, match=named):
        parse_written(bad)


def test_history_columns_round_trip_with_nan_inf_and_negative_steps():
    steps = np.array([-3, 0, 1, 1, 2**40], np.int64)
    values = np.array([np.nan, np.inf, -np.inf, -0.0, 1e-300])
    stamps = np.array([0, 1, 2, 3, 2**50], np.int64)
    body = encode_history_columns(steps, values, stamps)
    assert len(body) == 12 + 24 * 5
    got = decode_history_columns(body)
    np.testing.assert_array_equal(got.steps, steps)
    np.testing.assert_array_equal(got.values, values)
    np.testing.assert_array_equal(got.timestamps, stamps)
    assert (got.steps.dtype, got.values.dtype, got.timestamps.dtype) == (np.int64, np.float64, np.int64)
    assert np.signbit(got.values[3]) and len(got) == 5


def test_an_empty_history_is_a_bare_header():
    got = decode_history_columns(encode_history_columns(np.array([], np.int64), np.array([]), np.array([], np.int64)))
    assert len(got) == 0


@pytest.mark.parametrize("body, named", [
    (b"TSC1", "shorter than"), (b"ARW1" + bytes(8), "starts with"),
    (encode_history_columns(np.arange(3), np.zeros(3), np.arange(3))[:-1], "3 points need"),
])
def test_a_damaged_columns_body_is_refused(body, named):
    with pytest.raises(InvalidInput, match=named):
        decode_history_columns(body)


def test_columns_of_different_lengths_cannot_be_encoded():
    with pytest.raises(ValueError, match="differ in length"):
        encode_history_columns(np.arange(3), np.zeros(2), np.arange(3))
