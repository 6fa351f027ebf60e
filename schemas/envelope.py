"""The stored-event envelope every producer stamps: event id, writer id, per-aggregate sequence."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any, Mapping

from schemas.codec import aggregate_id


class WriterIdentity:
    """One writer: a stable id and a sequence per aggregate (run or experiment), starting at 1."""

    def __init__(self, writer_id: str | None = None) -> None:
        self.writer_id = writer_id or uuid.uuid4().hex
        self._seqs: dict[str, int] = {}
        self._lock = threading.Lock()

    def stamp(self, event_type: str, fields: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """(aggregate id, full record) for an event's own fields."""
        agg = aggregate_id(event_type, fields)
        with self._lock:
            seq = self._seqs.get(agg, 0) + 1
            self._seqs[agg] = seq
        return agg, {"event_id": uuid.uuid4().hex, "writer_id": self.writer_id, "seq": seq,
                     "timestamp_ms": time.time_ns() // 1_000_000, **fields}
