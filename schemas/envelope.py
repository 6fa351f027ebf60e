"""The stored-event envelope every producer stamps: event id, writer id, per-aggregate sequence."""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from typing import Any, Mapping

from trackstream.schemas.codec import aggregate_id


class WriterIdentity:
    """One writer: a stable id and a sequence per aggregate (run or experiment), starting at 1.

    ``stamp`` takes the next sequence number at once. A writer that may fail to store the event
    (the SDK's spool) calls ``next_record`` and then ``advance`` once it is stored, so a failed
    append does not leave a gap the consumer would report.
    """

    def __init__(self, writer_id: str | None = None) -> None:
        self.writer_id = writer_id or uuid.uuid4().hex
        self._seqs: dict[str, int] = {}
        self._lock = threading.Lock()

    def next_record(self, event_type: str, fields: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """(aggregate id, full record) for an event's own fields, with the next sequence, not yet taken."""
        agg = aggregate_id(event_type, fields)
        return agg, {"event_id": uuid.uuid4().hex, "writer_id": self.writer_id, "seq": self._seqs.get(agg, 0) + 1,
                     "timestamp_ms": time.time_ns() // 1_000_000, **fields}

    def advance(self, agg: str, seq: int) -> None:
        """Mark ``seq`` of ``agg`` as used (also to continue the sequences of events stored earlier)."""
        with self._lock:
            if seq > self._seqs.get(agg, 0):
                self._seqs[agg] = seq

    def stamp(self, event_type: str, fields: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """``next_record`` and ``advance`` in one step, safe to call from several threads."""
        with self._lock:
            agg, record = self.next_record(event_type, fields)
            self._seqs[agg] = record["seq"]
        return agg, record


# Writer ids of events stamped from an HTTP request's identity (RequestStamp); every other writer id
# is a 32-hex UUID, so the prefix cannot collide.
REQUEST_WRITER_PREFIX = "req-"


def is_request_writer(writer_id: str) -> bool:
    return writer_id.startswith(REQUEST_WRITER_PREFIX)


class RequestStamp:
    """The envelope of the events one request appends, derived from the request's identity alone, so
    every attempt of the request (a client's retry, on any gateway) stamps the same writer id, the same
    sequence per aggregate (1, 2, ...) and the same event ids: the materializer drops a repeat."""

    def __init__(self, identity: str) -> None:
        self.writer_id = REQUEST_WRITER_PREFIX + identity[:32]
        self._identity = identity
        self._seqs: dict[str, int] = {}

    def stamp(self, event_type: str, fields: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        agg = aggregate_id(event_type, fields)
        seq = self._seqs[agg] = self._seqs.get(agg, 0) + 1
        event_id = hashlib.sha256(f"{self._identity}\0{agg}\0{seq}".encode()).hexdigest()[:32]
        return agg, {"event_id": event_id, "writer_id": self.writer_id, "seq": seq,
                     "timestamp_ms": time.time_ns() // 1_000_000, **fields}
