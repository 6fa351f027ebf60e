"""MLflow's JSON field conventions on the way in: int64 fields that may arrive as strings, doubles
that may be the strings "NaN" / "Infinity", and the ``metrics`` list of log-batch as a columnar
:class:`MetricBatch`.

``decode_log_batch`` and ``metric_batch_from_json`` are the gateway's ingest hot path. A
log-batch body whose metrics all have the plain JSON types (string key, number value, integer
step and timestamp) is decoded by msgspec straight into typed structs — no dict per point — and
split into numpy columns, which the SDK's vectorised validation checks. Any other body (strings
for numbers, bools, nulls, NaN literals) is decoded generically and its metrics take the
point-by-point path, which accepts what MLflow accepts and names the point at fault. Both paths
raise the same errors at the same point of the request: the fast decoder only splits, it never
judges.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np

from trackstream.producer import validation as v
from trackstream.schemas import MetricBatch
from trackstream.server import json_codec
from trackstream.server.reader import HistoryPosition
from trackstream.errors import InvalidInput

_NUMBER_TYPES = {float, int}
_INT_TYPES = {int}


def json_int64(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise InvalidInput(f"Invalid value {value!r} for parameter '{name}': expected an int64")
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        raise InvalidInput(f"Invalid value {value!r} for parameter '{name}': expected an int64") from None
    if (isinstance(value, float) and value != number) or not v.INT64_MIN <= number <= v.INT64_MAX:
        raise InvalidInput(f"Invalid value {value!r} for parameter '{name}': expected an int64")
    return number


def json_double(value: Any, key: Any) -> float:
    """MLflow JSON doubles: numbers, or the strings NaN / Infinity / -Infinity (and numeric strings)."""
    if isinstance(value, str):
        try:
            return float({"Infinity": "inf", "-Infinity": "-inf"}.get(value, value))
        except ValueError:
            raise InvalidInput(f"Invalid value {value!r} for metric {key!r}: expected a number") from None
    if value is None:
        raise InvalidInput("Missing value for required parameter 'value'.")
    if isinstance(value, bool):
        return float(value)  # MLflow's REST API stores true as 1.0 (observed)
    return value


class _WireMetric(msgspec.Struct):
    key: str
    value: float
    timestamp: int
    step: int = 0


class _WireLogBatch(msgspec.Struct):
    run_id: Any = None
    metrics: list[_WireMetric] = []
    params: Any = None
    tags: Any = None


_LOG_BATCH_DECODER = msgspec.json.Decoder(_WireLogBatch)


@dataclass(frozen=True)
class MetricColumns:
    """log-batch metrics already split into columns by the typed decoder, not yet validated."""

    keys: list[str]
    values: np.ndarray
    steps: np.ndarray
    timestamps: np.ndarray

    def __len__(self) -> int:
        return len(self.keys)


def decode_log_batch(raw: bytes) -> dict[str, Any]:
    """A log-batch request body; ``metrics`` is a :class:`MetricColumns` when every metric is plain
    (see the module docstring), else the list of objects as sent. ``model_metrics``: the metrics tied
    to a logged model (``model_id`` set), as objects."""
    if b'"model_id"' in raw:  # MLflow 3 metrics tied to a logged model: the rare path, as objects
        return _log_batch_objects(raw)
    try:
        body = _LOG_BATCH_DECODER.decode(raw)
        metrics = body.metrics
        columns = MetricColumns([m.key for m in metrics], np.array([m.value for m in metrics], np.float64),
                                np.array([m.step for m in metrics], np.int64),
                                np.array([m.timestamp for m in metrics], np.int64))
    except (msgspec.DecodeError, OverflowError):  # msgspec's ValidationError is a DecodeError
        return _log_batch_objects(raw)
    return {"run_id": body.run_id, "metrics": columns, "params": body.params, "tags": body.tags,
            "model_metrics": []}


def _log_batch_objects(raw: bytes) -> dict[str, Any]:
    body = json_codec.decode_object(raw)
    listed = body.get("metrics")
    body["model_metrics"] = [m for m in listed if isinstance(m, dict) and m.get("model_id")] \
        if isinstance(listed, list) else []
    return body


def metric_batch_from_json(metrics: list[dict[str, Any]] | MetricColumns) -> MetricBatch:
    """log-batch's ``metrics`` (a list of objects, or columns from ``decode_log_batch``) as one
    validated :class:`MetricBatch`."""
    if isinstance(metrics, MetricColumns):
        return _columnar_batch(metrics.keys, metrics.values, metrics.steps, metrics.timestamps)
    keys = [m.get("key") for m in metrics]
    values = [m.get("value") for m in metrics]
    steps = [m.get("step") for m in metrics]
    stamps = [m.get("timestamp") for m in metrics]
    if (set(map(type, values)) <= _NUMBER_TYPES and set(map(type, steps)) <= _INT_TYPES
            and set(map(type, stamps)) <= _INT_TYPES):
        try:
            arrays = np.array(values, np.float64), np.array(steps, np.int64), np.array(stamps, np.int64)
        except OverflowError:  # an integer beyond 64 bits: let the point-by-point path name it
            pass
        else:
            return _columnar_batch(keys, *arrays)
    return _batch_point_by_point(metrics)


def _columnar_batch(keys: list[Any], values: np.ndarray, steps: np.ndarray, stamps: np.ndarray) -> MetricBatch:
    distinct = {v.validate_key(key, "metric"): None for key in dict.fromkeys(keys)}
    if len(distinct) == 1:
        index = np.zeros(len(keys), np.uint32)
    else:
        position = {key: i for i, key in enumerate(distinct)}
        index = np.fromiter((position[key] for key in keys), np.uint32, len(keys))
    _, values, steps, stamps = v.validate_metric_arrays(next(iter(distinct), "_"), values, steps, stamps)
    return MetricBatch(list(distinct), index, steps, stamps, values)


def _batch_point_by_point(metrics: list[dict[str, Any]]) -> MetricBatch:
    keys: dict[str, int] = {}
    index, steps, stamps, values = [], [], [], []
    for m in metrics:
        if m.get("timestamp") is None:
            raise InvalidInput(f"Missing value for required parameter 'timestamp' (metric {m.get('key')!r}).")
        value, step, stamp = v.validate_metric(m.get("key"), json_double(m.get("value"), m.get("key")),
                                               json_int64(m.get("step", 0) or 0, "step"),
                                               json_int64(m["timestamp"], "timestamp"))
        key = v.validate_key(m.get("key"), "metric")
        index.append(keys.setdefault(key, len(keys)))
        steps.append(step)
        stamps.append(stamp)
        values.append(value)
    return MetricBatch(list(keys), np.array(index, np.uint32), np.array(steps, np.int64),
                       np.array(stamps, np.int64), np.array(values, np.float64))


_HISTORY_TOKEN = re.compile(r"h1:(-?\d{1,19}):(\d{1,19}):(\d{1,19})")


def encode_history_token(position: HistoryPosition) -> str:
    return f"h1:{position.step}:{position.timestamp_ms}:{position.seen_at_position}"


def decode_history_token(token: Any) -> HistoryPosition | None:
    """A get-history ``page_token`` (opaque to clients, as MLflow's are) back into a position."""
    if token in (None, ""):
        return None
    match = _HISTORY_TOKEN.fullmatch(token) if isinstance(token, str) else None
    numbers = [int(g) for g in match.groups()] if match else []
    if not numbers or not all(v.INT64_MIN <= n <= v.INT64_MAX for n in numbers):
        raise InvalidInput(f"Invalid page token {token!r}: pass the next_page_token of the previous page")
    return HistoryPosition(*numbers)
