"""The gateway's write side: append events to Kafka and know when the worker has materialized them.

``EventAppender.append`` resolves once the broker acknowledged the event (acks=all), with its
partition and offset. ``ReadYourWrites`` keeps the highest acknowledged offset per partition;
a read first waits until the worker's materialized position has passed those marks, so a client
always sees its own acknowledged writes. While a read waits, the worker's batch window ends as
soon as the batch holds an event and the stream has gone quiet (``consumers/batching.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from typing import Any, Callable, Mapping

from confluent_kafka import KafkaError, Producer

from trackstream.consumers.batching import FlushRequests
from trackstream.schemas import EventCodec, default_codec
from trackstream.schemas.codec import KAFKA_PARTITIONER
from trackstream.schemas.envelope import RequestStamp, WriterIdentity
from trackstream.errors import DeliveryError, ServiceUnavailable

# No compression on the gateway's events: metric values barely compress (a 1000-point log-batch
# event is 28 KB raw, 16 KB with lz4), and compressing costs the producer and the broker about
# 1 s of CPU per million points on a 2-core machine — a sixth of the REST ingest budget. The SDK's
# bulk path, where the volume is, compresses.
# No linger: every append is a request waiting for its answer, and librdkafka still batches what
# queues up while a produce request is in flight. Measured with `bench_mlflow_compat.py --mode
# sustained --size ci --duration 5 --load-runs 400 --latency-calls 300 --clients 4 --styles pre`,
# twice each, linger 2 ms -> 0: pre-encoded ingest 177k/291k -> 348k/354k points/s, server CPU
# 8.3/6.4 -> 5.4/5.4 us per point, runs/create p50 13.6/13.1 -> 9.3/6.6 ms, log-metric p50
# 5.8/6.5 -> 4.0/2.9 ms.
GATEWAY_PRODUCER_CONFIG: dict[str, Any] = {
    "partitioner": KAFKA_PARTITIONER, "enable.idempotence": True, "acks": "all", "compression.type": "none", "linger.ms": 0,
    "message.max.bytes": 8_000_000, "delivery.timeout.ms": 30_000,
}


class ReadYourWrites:
    """Acknowledged-write marks vs. materialized positions, per partition."""

    def __init__(self, flush_requests: FlushRequests | None = None) -> None:
        self.acked: dict[int, int] = {}
        self.materialized: dict[int, int] = {}
        self.flush_requests = flush_requests
        self._changed = asyncio.Event()

    def record_ack(self, partition: int, offset: int) -> None:
        if offset > self.acked.get(partition, -1):
            self.acked[partition] = offset

    def record_materialized(self, positions: Mapping[int, int]) -> None:
        for partition, offset in positions.items():
            if offset > self.materialized.get(partition, -1):
                self.materialized[partition] = offset
        self._changed.set()

    def pending(self, marks: Mapping[int, int] | None = None) -> dict[int, int]:
        """The partitions (and offsets) of ``marks`` — by default every acknowledged write — not yet materialized."""
        marks = self.acked if marks is None else marks
        return {p: o for p, o in marks.items() if self.materialized.get(p, -1) < o}

    async def wait(self, timeout: float) -> None:
        """Wait until every write acknowledged before this call is materialized.

        The marks are taken once, on entry: writes acknowledged while waiting happened after
        the read began, so a busy ingest stream cannot keep a read waiting for ever.
        """
        await self.wait_for(dict(self.acked), timeout)

    async def wait_for(self, marks: Mapping[int, int], timeout: float) -> None:
        """Wait until the worker has materialized every ``marks`` offset: the gateway's own, or those
        an SDK process acknowledged and sent along (``trackstream/read_protocol.py``)."""
        if not self.pending(marks):
            return
        with self.flush_requests.reader_waiting() if self.flush_requests else contextlib.nullcontext():
            await self._wait_until(marks, timeout)

    async def _wait_until(self, marks: Mapping[int, int], timeout: float) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while self.pending(marks):
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise ServiceUnavailable(
                    f"the worker has not materialized acknowledged writes within {timeout:.0f} s "
                    f"(pending partitions/offsets: {self.pending(marks)}); retry shortly")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass


# The stamp of the write request being handled (server/request_identity.py sets it); None outside one.
CURRENT_REQUEST: contextvars.ContextVar[RequestStamp | None] = contextvars.ContextVar("trackstream_request",
                                                                                       default=None)


class EventAppender:
    def __init__(self, bootstrap: str, topic: str, consistency: ReadYourWrites,
                 codec: EventCodec | None = None, writer_id: str | None = None, ack_timeout_s: float = 30.0,
                 client_config: Mapping[str, str] | None = None,
                 on_ack: Callable[[int, int, str, dict[str, Any]], None] | None = None) -> None:
        self.topic = topic
        self.ack_timeout_s = ack_timeout_s
        self.codec = codec or default_codec()
        self.identity = WriterIdentity(writer_id)
        self.consistency = consistency
        self.on_ack = on_ack  # (partition, offset, event type, record) of every event this gateway appended
        self._producer = Producer({"bootstrap.servers": bootstrap, **GATEWAY_PRODUCER_CONFIG, **(client_config or {})})
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="gateway-producer", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    async def append(self, event_type: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Append one event; returns its record once the broker acknowledged it.

        Inside a write request the event is stamped from the request's identity (a retry stamps the
        same envelope, which the materializer drops), elsewhere from this gateway's own writer."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future = loop.create_future()
        request = CURRENT_REQUEST.get()
        key, record = (request or self.identity).stamp(event_type, fields)
        payload = self.codec.encode(event_type, record)

        def on_delivery(err: KafkaError | None, msg: Any) -> None:
            result = (err, msg.partition(), msg.offset()) if err is None else (err, -1, -1)
            loop.call_soon_threadsafe(lambda: done.done() or done.set_result(result))

        self._producer.produce(self.topic, payload, key.encode(), on_delivery=on_delivery)
        try:
            err, partition, offset = await asyncio.wait_for(asyncio.shield(done), self.ack_timeout_s)
        except asyncio.TimeoutError:
            raise ServiceUnavailable(
                f"Kafka did not acknowledge the {event_type} event within {self.ack_timeout_s:g} s; it may still "
                "be stored, and retrying the same request is safe (a repeat is dropped)") from None
        if err is not None:
            raise DeliveryError(f"Kafka did not accept the {event_type} event: {err.str()}")
        self.consistency.record_ack(partition, offset)
        if self.on_ack is not None:
            self.on_ack(partition, offset, event_type, record)
        return record

    def close(self, timeout: float = 10.0) -> None:
        self._producer.flush(timeout)
        self._stop.set()
        self._poller.join(timeout=2)
