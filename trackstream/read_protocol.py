"""The two wire formats the SDK's reads and the gateway share; one home for each layout.

**Written marks** (``X-Trackstream-Written``). The SDK writes straight to Kafka, so the gateway's
read-your-writes marks (``server/event_log.py``) never see those writes. A reading SDK flushes,
then sends the highest acknowledged offset per partition of its own events::

    X-Trackstream-Written: <topic>;<partition>:<offset>,<partition>:<offset>,...

and the gateway waits, with the same mechanism as for its own writes, until its worker has
materialized every mark before it answers. The topic is named so that an SDK logging to another
topic than the server materializes gets a clear error rather than a 30 s wait.

**History columns** (``application/x-trackstream-columns``), the body of
``/api/ts/runs/<run>/metrics/<key>?format=columns``: numpy alone decodes it, so the slim client
needs no pyarrow. All little-endian::

    bytes 0-3    magic b"TSC1"
    bytes 4-11   uint64 n, the number of points
    then         int64 step[n], float64 value[n], int64 timestamp_ms[n]

Points are in (step, timestamp, value) order, as every history read returns them.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from trackstream.errors import InvalidInput

WRITTEN_HEADER = "X-Trackstream-Written"
NEXT_PAGE_HEADER = "X-Trackstream-Next-Page-Token"  # the page_token of a paged read route's next page
COLUMNS_MEDIA_TYPE = "application/x-trackstream-columns"
MAX_MARKED_PARTITIONS = 10_000

_MAGIC = b"TSC1"
_HEAD = struct.Struct("<4sQ")
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


def format_written(topic: str, marks: Mapping[int, int]) -> str:
    """The header value for ``marks`` (partition -> highest acknowledged offset) on ``topic``."""
    return f"{topic};" + ",".join(f"{p}:{o}" for p, o in sorted(marks.items()))


def parse_written(value: str) -> tuple[str, dict[int, int]]:
    """``format_written``'s inverse; anything else is an ``InvalidInput`` naming the header."""
    topic, sep, body = value.strip().partition(";")
    if not sep or not _TOPIC.match(topic):
        raise InvalidInput(f"{WRITTEN_HEADER} must look like '<topic>;<partition>:<offset>,...', got {value[:200]!r}")
    marks: dict[int, int] = {}
    for item in filter(None, body.split(",")):
        partition, colon, offset = item.strip().partition(":")
        if not (colon and partition.isascii() and partition.isdigit() and offset.isascii() and offset.isdigit()):
            raise InvalidInput(f"{WRITTEN_HEADER}: {item[:50]!r} is not <partition>:<offset> (two whole numbers)")
        if int(offset) >= 2**63:
            raise InvalidInput(f"{WRITTEN_HEADER}: offset {offset[:30]} is out of range")
        marks[int(partition)] = max(int(offset), marks.get(int(partition), -1))
    if len(marks) > MAX_MARKED_PARTITIONS:
        raise InvalidInput(f"{WRITTEN_HEADER} names {len(marks)} partitions; at most {MAX_MARKED_PARTITIONS}")
    return topic, marks


@dataclass(frozen=True)
class HistoryColumns:
    """One metric's history as numpy columns (what ``ts.get_metric_history`` returns)."""

    steps: np.ndarray        # int64
    values: np.ndarray       # float64
    timestamps: np.ndarray   # int64, Unix ms

    def __len__(self) -> int:
        return len(self.steps)


def encode_history_columns(steps: np.ndarray, values: np.ndarray, timestamps: np.ndarray) -> bytes:
    n = len(steps)
    if not len(values) == len(timestamps) == n:
        raise ValueError(f"history columns differ in length: {n} steps, {len(values)} values, "
                         f"{len(timestamps)} timestamps")
    return b"".join((_HEAD.pack(_MAGIC, n), np.ascontiguousarray(steps, "<i8").tobytes(),
                     np.ascontiguousarray(values, "<f8").tobytes(), np.ascontiguousarray(timestamps, "<i8").tobytes()))


def decode_history_columns(body: bytes) -> HistoryColumns:
    """Zero-copy views over ``body`` (read-only arrays)."""
    if len(body) < _HEAD.size:
        raise InvalidInput(f"history columns body is {len(body)} bytes, shorter than its {_HEAD.size}-byte header")
    magic, n = _HEAD.unpack_from(body)
    if magic != _MAGIC:
        raise InvalidInput(f"history columns body starts with {magic!r}, not {_MAGIC!r}")
    if len(body) != _HEAD.size + 24 * n:
        raise InvalidInput(f"history columns body holds {len(body)} bytes; {n} points need {_HEAD.size + 24 * n}")
    start = _HEAD.size
    steps = np.frombuffer(body, "<i8", n, start)
    values = np.frombuffer(body, "<f8", n, start + 8 * n)
    timestamps = np.frombuffer(body, "<i8", n, start + 16 * n)
    return HistoryColumns(steps, values, timestamps)
