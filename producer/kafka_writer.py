"""EventWriter: stamps the envelope (event id, writer id, per-aggregate sequence) and appends to Kafka.

The only module of the SDK that imports confluent-kafka. Delivery is asynchronous: ``append``
returns once librdkafka queued the message; failures reported by delivery callbacks are kept
and surfaced by ``flush`` / ``raise_delivery_errors`` instead of being swallowed.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any, Mapping

from confluent_kafka import KafkaError, KafkaException, Producer

from schemas import EventCodec, aggregate_id, default_codec
from trackstream.errors import DeliveryError

PRODUCER_DEFAULTS: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "compression.type": "lz4",
    "linger.ms": 20,
    "batch.size": 1_000_000,
    "message.max.bytes": 8_000_000,
    "queue.buffering.max.kbytes": 1_048_576,
    "queue.buffering.max.messages": 1_000_000,
    "delivery.timeout.ms": 120_000,
}


class EventWriter:
    """One writer identity; sequences are per (writer, aggregate), which is what the consumer checks."""

    def __init__(self, bootstrap: str, topic: str, codec: EventCodec | None = None,
                 writer_id: str | None = None, producer_config: Mapping[str, Any] | None = None) -> None:
        self.topic = topic
        self.codec = codec or default_codec()
        self.writer_id = writer_id or uuid.uuid4().hex
        self._seqs: dict[str, int] = {}
        self._lock = threading.Lock()
        self._errors: list[str] = []
        self.delivered = 0
        config = {"bootstrap.servers": bootstrap, **PRODUCER_DEFAULTS, **(producer_config or {})}
        self._producer = Producer(config)

    def append(self, event_type: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Encode and enqueue one event; returns the full record that was sent."""
        with self._lock:
            agg = aggregate_id(event_type, fields)
            seq = self._seqs.get(agg, 0) + 1
            self._seqs[agg] = seq
            record = {"event_id": uuid.uuid4().hex, "writer_id": self.writer_id, "seq": seq,
                      "timestamp_ms": int(time.time() * 1000), **fields}
            payload = self.codec.encode(event_type, record)
            self._produce(agg.encode(), payload)
        return record

    def _produce(self, key: bytes, payload: bytes) -> None:
        while True:
            try:
                self._producer.produce(self.topic, payload, key, on_delivery=self._on_delivery)
                break
            except BufferError:
                self._producer.poll(0.05)  # local queue full: let librdkafka drain, then retry
        self._producer.poll(0)

    def _on_delivery(self, err: KafkaError | None, msg: Any) -> None:
        if err is None:
            self.delivered += 1
        else:
            self._errors.append(f"{err.name()}: {err.str()}")

    def flush(self, timeout: float = 30.0) -> int:
        """Wait up to ``timeout`` seconds; returns how many events are still not acknowledged."""
        try:
            pending = self._producer.flush(timeout)
        except KafkaException as exc:
            raise DeliveryError(f"flush failed: {exc}") from exc
        self.raise_delivery_errors()
        return pending

    def raise_delivery_errors(self) -> None:
        if self._errors:
            errors, self._errors = self._errors, []
            raise DeliveryError(f"{len(errors)} event(s) were not delivered to {self.topic}: {errors[0]}")

    def close(self, timeout: float = 30.0) -> int:
        return self.flush(timeout)
