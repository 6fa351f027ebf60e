"""JSON in and out of the HTTP edge: one decoder for request bodies, one encoder for responses.

Requests are parsed with orjson; a body orjson refuses is parsed again with the standard library,
which also accepts what MLflow's own server (Flask, ``json.loads``) accepts — bare ``NaN`` /
``Infinity`` literals, integers wider than 64 bits, lone surrogate escapes — and gives the
position of a real syntax error. Responses spell NaN and ±infinity as MLflow does (the strings
``"NaN"``, ``"Infinity"``, ``"-Infinity"``); numpy arrays are written column-wise by orjson.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import orjson

from trackstream.errors import InvalidInput

_ENCODE_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def decode_object(raw: bytes, what: str = "request body") -> dict[str, Any]:
    """``raw`` as a JSON object; :class:`InvalidInput` naming the problem otherwise. Empty means ``{}``."""
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:
            body = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"Malformed JSON {what}: not UTF-8 ({exc})") from None
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"Malformed JSON {what}: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidInput(f"The {what} must be a JSON object, got {type(body).__name__}")
    return body


def non_finite_name(value: float) -> str:
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def _default(obj: Any) -> Any:
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    if isinstance(obj, (bytes, bytearray)):
        return obj.decode("utf-8", "replace")
    if isinstance(obj, np.ndarray):  # float arrays holding NaN / inf (finite ones go through orjson natively)
        return [v if math.isfinite(v) else non_finite_name(v) for v in obj.tolist()]
    return str(obj)


def _spell_non_finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return non_finite_name(obj)
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind == "f" and not np.isfinite(obj).all():
            return _default(obj)
        return obj
    if isinstance(obj, dict):
        return {k: _spell_non_finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_spell_non_finite(v) for v in obj]
    return obj


def encode(payload: Any) -> bytes:
    return orjson.dumps(_spell_non_finite(payload), default=_default, option=_ENCODE_OPTIONS)



def encode_finite(payload: Any) -> bytes:
    """``encode`` for a payload known to hold no NaN / infinite float (skips the walk looking for them)."""
    return orjson.dumps(payload, default=_default, option=_ENCODE_OPTIONS)


def metric_points(key: str, steps: np.ndarray, timestamps: np.ndarray, values: np.ndarray) -> list[dict[str, Any]]:
    """MLflow's metric objects for one key's columns, NaN / infinities already spelled as strings."""
    value_list = values.tolist()
    for i in np.flatnonzero(~np.isfinite(values)).tolist():
        value_list[i] = non_finite_name(value_list[i])
    return [{"key": key, "value": value, "timestamp": ts, "step": step}
            for value, ts, step in zip(value_list, timestamps.tolist(), steps.tolist())]
