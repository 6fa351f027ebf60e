"""Request bodies in, response bodies out."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from trackstream.server.json_codec import decode_object, encode
from trackstream.errors import InvalidInput


def test_bodies_the_standard_library_accepts_but_orjson_refuses_still_decode():
    body = decode_object(b'{"value": NaN, "big": 123456789012345678901234567890, "inf": -Infinity}')
    assert math.isnan(body["value"]) and body["big"] == 123456789012345678901234567890 and body["inf"] == -math.inf


def test_empty_body_is_an_empty_object():
    assert decode_object(b"") == {} and decode_object(b"  \n") == {}


@pytest.mark.parametrize("raw, message", [
    (b'{"a": ', "Malformed JSON request body: Expecting value: line 1 column 7"),
    (b"\xff\xfe{}", "not UTF-8"),
    (b"[1, 2]", "must be a JSON object, got list"),
])
def test_malformed_bodies_are_refused_with_the_reason(raw, message):
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace("[", r"\[")):
        decode_object(raw)


def test_non_finite_floats_are_spelled_as_mlflow_does_in_scalars_and_arrays():
    out = json.loads(encode({"v": [math.nan, math.inf, 1.5], "arr": np.array([-math.inf, 2.0]), "ok": np.arange(2)}))
    assert out == {"v": ["NaN", "Infinity", 1.5], "arr": ["-Infinity", 2.0], "ok": [0, 1]}
