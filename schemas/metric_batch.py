"""MetricBatch: the columnar payload of a ``metrics_logged`` event.

Points travel as parallel little-endian arrays packed into Avro ``bytes`` fields
(uint32 key index, int64 step, int64 timestamp ms, float64 value), so encoding and decoding
cost a few ns per point instead of a Python object per point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from trackstream.errors import DecodeError

KEY_INDEX_DTYPE = np.dtype("<u4")
STEP_DTYPE = np.dtype("<i8")
TIMESTAMP_DTYPE = np.dtype("<i8")
VALUE_DTYPE = np.dtype("<f8")


@dataclass(frozen=True, eq=False)
class MetricBatch:
    keys: Sequence[str]
    key_index: np.ndarray
    steps: np.ndarray
    timestamps: np.ndarray
    values: np.ndarray

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def to_record_fields(self) -> dict[str, Any]:
        return {
            "count": len(self),
            "keys": list(self.keys),
            "key_index": np.ascontiguousarray(self.key_index, KEY_INDEX_DTYPE).tobytes(),
            "steps": np.ascontiguousarray(self.steps, STEP_DTYPE).tobytes(),
            "timestamps": np.ascontiguousarray(self.timestamps, TIMESTAMP_DTYPE).tobytes(),
            "values": np.ascontiguousarray(self.values, VALUE_DTYPE).tobytes(),
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> "MetricBatch":
        count = record["count"]
        keys = record["keys"]
        arrays = {}
        for field, dtype in (("key_index", KEY_INDEX_DTYPE), ("steps", STEP_DTYPE),
                             ("timestamps", TIMESTAMP_DTYPE), ("values", VALUE_DTYPE)):
            raw = record[field]
            if len(raw) != count * dtype.itemsize:
                raise DecodeError(
                    f"metrics_logged field {field!r} holds {len(raw)} bytes, expected {count} x {dtype.itemsize}"
                )
            arrays[field] = np.frombuffer(raw, dtype)
        if count and int(arrays["key_index"].max()) >= len(keys):
            raise DecodeError(f"metrics_logged key_index points past the {len(keys)} keys of the batch")
        return cls(keys, arrays["key_index"], arrays["steps"], arrays["timestamps"], arrays["values"])

    def key_column(self) -> np.ndarray:
        """One key string per point (an object array built with numpy take, not a Python loop)."""
        return np.asarray(self.keys, dtype=object).take(self.key_index) if len(self) else np.empty(0, object)
