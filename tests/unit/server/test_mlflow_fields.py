"""log-batch decoding: the typed and columnar fast paths agree with the point-by-point path."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from trackstream.server.mlflow_fields import (MetricColumns, _batch_point_by_point, decode_log_batch, json_int64,
                                  metric_batch_from_json)
from trackstream.errors import InvalidInput


def points(n, key="loss", **override):
    return [{"key": key, "value": i * 0.5, "timestamp": 1_700_000_000_000 + i, "step": i, **override}
            for i in range(n)]


def assert_same_batch(a, b):
    assert list(a.keys) == list(b.keys)
    for field in ("key_index", "steps", "timestamps"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field
    assert np.array_equal(a.values, b.values, equal_nan=True)


@pytest.mark.parametrize("metrics", [
    points(1000),
    points(10, key="a") + points(10, key="b") + points(5, key="a"),
    [{"key": "m", "value": 3, "timestamp": 5, "step": -7}],                       # int value, negative step
    [{"key": "m", "value": v, "timestamp": 5, "step": 0} for v in (math.nan, math.inf, -math.inf)],
], ids=["one-key", "interleaved-keys", "int-value", "non-finite-floats"])
def test_columnar_path_decodes_exactly_like_the_point_by_point_path(metrics):
    assert_same_batch(metric_batch_from_json(metrics), _batch_point_by_point(metrics))


def log_batch_body(metrics, **extra) -> bytes:
    return json.dumps({"run_id": "r" * 32, "metrics": metrics, **extra}).encode()


@pytest.mark.parametrize("metrics", [
    points(1000),
    points(10, key="a") + points(10, key="b") + points(5, key="a"),
    [{"key": "m", "value": 3, "timestamp": 5}],                                    # int value, step omitted
    [{"key": "m", "value": 1.5, "timestamp": 5, "step": -7, "extra": "ignored"}],  # unknown field
], ids=["one-key", "interleaved-keys", "int-value-no-step", "unknown-field"])
def test_plain_log_batch_bodies_are_split_into_columns_that_decode_like_the_generic_path(metrics):
    params, tags = [{"key": "p", "value": "1"}], [{"key": "t", "value": "x"}]
    body = decode_log_batch(log_batch_body(metrics, params=params, tags=tags))

    assert isinstance(body["metrics"], MetricColumns) and len(body["metrics"]) == len(metrics)
    assert body["run_id"] == "r" * 32 and body["params"] == params and body["tags"] == tags
    assert_same_batch(metric_batch_from_json(body["metrics"]), _batch_point_by_point(metrics))


@pytest.mark.parametrize("odd", [
    {"value": True}, {"value": "NaN"}, {"value": None}, {"step": 1.0}, {"step": "3"},
    {"timestamp": 2**64 - 1}, {"key": 7},
], ids=["bool-value", "string-value", "null-value", "float-step", "string-step", "uint64-timestamp", "int-key"])
def test_log_batch_bodies_the_typed_decoder_refuses_keep_their_points_as_sent(odd):
    metrics = points(3)
    metrics[1] = {**metrics[1], **odd}
    body = decode_log_batch(log_batch_body(metrics))
    assert body["metrics"] == metrics


def test_log_batch_body_with_nan_literal_or_bad_shape_falls_back_to_the_generic_decoder():
    body = decode_log_batch(b'{"run_id": "r", "metrics": [{"key": "m", "value": NaN, "timestamp": 5}]}')
    assert math.isnan(body["metrics"][0]["value"])
    assert decode_log_batch(b'{"run_id": "r", "metrics": null}')["metrics"] is None
    with pytest.raises(InvalidInput, match="must be a JSON object"):
        decode_log_batch(b"[]")
    with pytest.raises(InvalidInput):
        decode_log_batch(b'{"run_id": ')


def test_a_bad_key_in_plain_columns_is_refused_when_the_batch_is_built_not_when_decoded():
    body = decode_log_batch(log_batch_body(points(2, key="bad key?")))
    with pytest.raises(InvalidInput, match="metric key"):
        metric_batch_from_json(body["metrics"])


def test_interleaved_keys_keep_first_seen_order_and_index_each_point():
    batch = metric_batch_from_json(points(2, key="b") + points(1, key="a") + points(1, key="b"))
    assert list(batch.keys) == ["b", "a"] and batch.key_index.tolist() == [0, 0, 1, 0]


def test_mlflow_spellings_take_the_exact_path_and_are_accepted():
    metrics = [{"key": "m", "value": "NaN", "timestamp": "5", "step": "3"},
               {"key": "m", "value": "-Infinity", "timestamp": 6},
               {"key": "m", "value": True, "timestamp": 7, "step": None}]
    batch = metric_batch_from_json(metrics)
    assert math.isnan(batch.values[0]) and batch.values[1] == -math.inf and batch.values[2] == 1.0
    assert batch.steps.tolist() == [3, 0, 0] and batch.timestamps.tolist() == [5, 6, 7]


@pytest.mark.parametrize("bad, message", [
    ({"timestamp": -1}, "timestamp"),
    ({"step": 2**63}, "step"),
    ({"step": 1.5}, "step"),
    ({"value": "abc"}, "metric 'loss'"),
    ({"value": None}, "'value'"),
    ({"key": "bad key?"}, "metric key"),
    ({"key": None}, "metric key"),
], ids=["negative-timestamp", "step-beyond-int64", "fractional-step", "text-value", "null-value",
        "bad-key", "no-key"])
def test_one_bad_point_among_good_ones_fails_the_batch_naming_the_field(bad, message):
    metrics = points(50)
    metrics[17] = {**metrics[17], **bad}
    with pytest.raises(InvalidInput, match=message):
        metric_batch_from_json(metrics)


def test_missing_timestamp_is_named():
    metrics = points(3)
    del metrics[1]["timestamp"]
    with pytest.raises(InvalidInput, match="required parameter 'timestamp'"):
        metric_batch_from_json(metrics)


@pytest.mark.parametrize("value", [True, "x", 1.5, 2**63, None])
def test_json_int64_refuses_what_is_not_an_int64(value):
    with pytest.raises(InvalidInput, match="expected an int64"):
        json_int64(value, "start_time")


def test_json_int64_accepts_strings_and_whole_floats():
    assert json_int64("12", "x") == 12 and json_int64(12.0, "x") == 12 and json_int64(-(2**63), "x") == -(2**63)


def test_history_tokens_round_trip_and_garbage_is_refused():
    from trackstream.server.mlflow_fields import decode_history_token, encode_history_token
    from trackstream.server.reader import HistoryPosition

    position = HistoryPosition(-5, 1_700_000_000_000, 3)
    assert decode_history_token(encode_history_token(position)) == position
    assert decode_history_token(None) is None and decode_history_token("") is None
    for bad in ("25000", "h1:1:2", "h1:x:1:1", "h1:1:-2:0", f"h1:{2**63}:0:0", 7):
        with pytest.raises(InvalidInput, match="Invalid page token"):
            decode_history_token(bad)
