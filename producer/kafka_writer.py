"""EventWriter: stamps the envelope (event id, writer id, per-aggregate sequence) and appends it to a
local write-ahead spool; a background sender ships the spool to Kafka in order.

``append`` never touches the network: it encodes the event and appends it to a ``DiskSpool``
(``producer/spool.py``), so logging keeps working while the broker is down, at start or mid-run.
The sender thread (``SpoolShipper``) reads the spool in order and produces to Kafka; the spool's
delivered cursor only advances over a contiguous prefix of acknowledged records. Whatever is not
acknowledged when the process exits stays on disk; ``trackstream sync`` or the next writer started
on the same spool root delivers it (``producer/sync.py``).

Duplicates are allowed, loss and reordering are not: the consumer drops any event whose
(writer_id, seq) per aggregate is <= the last one it applied, so re-sending records is harmless,
but an event that reaches Kafka *after* a later event of the same aggregate is dropped for good.
That rules out librdkafka message timeouts: when queued messages time out, the idempotent
producer skips them and goes on with the later ones ("Message timeout considerations" in
librdkafka's INTRODUCTION.md), so a retry from the spool would land behind its successors.
Hence ``delivery.timeout.ms = 0`` (infinite): while the broker is away librdkafka keeps at most
``max_in_flight`` messages and retries them in order itself; the spool holds the rest. A delivery
error that still comes back (fatal idempotence state, authorization, unknown topic) makes the shipper
drop the Producer, wait (exponential backoff, capped at 5 s), build a new one and re-produce
everything after the delivered cursor in spool order. A new Producer, rather than the old one,
because an idempotent producer in a fatal state never recovers and because it starts with a
clean per-partition sequence state instead of one that skipped the failed messages. The same
happens when messages are in flight, the broker answers metadata requests and yet no delivery
report arrives for ``STALL_S`` (a Producer once sat for a minute after a broker restart).

After ``os.fork`` (DataLoader workers, ``multiprocessing`` with the fork start method) a child
must not write as its parent: it would reuse the writer id and sequence numbers (the consumer
would drop its events as duplicates) and append to the parent's spool file. An at-fork hook
gives every writer in the child a new identity; its own spool, Kafka producer and sender thread
are made on its first append, so children that never log cost nothing. Records the parent had
buffered stay the parent's to send.

Only this module imports confluent-kafka on the producing side.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import re
import threading
import time
import uuid
import warnings
import weakref
from pathlib import Path
from typing import Any, Callable, Mapping

from confluent_kafka import KafkaError, KafkaException, Producer

from trackstream.producer.spool import DEFAULT_MAX_BYTES, HEADER_SIZE, DiskSpool, SpoolCorrupt, SpoolFull
from trackstream.schemas import EventCodec, default_codec
from trackstream.schemas.codec import KAFKA_PARTITIONER
from trackstream.schemas.envelope import WriterIdentity
from trackstream.config import default_home
from trackstream.errors import DeliveryError

PRODUCER_DEFAULTS: dict[str, Any] = {
    "partitioner": KAFKA_PARTITIONER,
    "enable.idempotence": True,
    "acks": "all",
    "compression.type": "lz4",
    "linger.ms": 20,
    "batch.size": 1_000_000,
    "message.max.bytes": 8_000_000,
    "queue.buffering.max.kbytes": 1_048_576,
    "queue.buffering.max.messages": 1_000_000,
    "delivery.timeout.ms": 0,  # infinite; see the module docstring
    "reconnect.backoff.max.ms": 2_000,
}

MAX_IN_FLIGHT = 10_000
MAX_IN_FLIGHT_BYTES = 64 << 20
POLL_S = 0.05
STALL_S = 15.0
PROBE_S = 5.0
IDLE_WAIT_S = 0.2
SYNC_INTERVAL_S = 1.0
PERSIST_INTERVAL_S = 0.5
BACKOFF_INITIAL_S = 0.2
BACKOFF_MAX_S = 5.0
LEFTOVER_RETRY_S = (5.0, 60.0)
ATEXIT_CLOSE_TIMEOUT_S = 2.0

log = logging.getLogger(__name__)
librdkafka_log = logging.getLogger(__name__ + ".librdkafka")
librdkafka_log.addHandler(logging.NullHandler())
librdkafka_log.propagate = False

# A record with one of these can never be delivered; it is skipped and reported.
UNDELIVERABLE = frozenset({
    KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_MSG_SIZE, KafkaError.RECORD_LIST_TOO_LARGE,
    KafkaError.INVALID_RECORD,
})
# Configuration / permission problems: reported to the caller, the records stay and are retried.
REPORTED = frozenset({
    KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, KafkaError.SASL_AUTHENTICATION_FAILED,
    KafkaError._AUTHENTICATION, KafkaError.TOPIC_EXCEPTION, KafkaError._UNKNOWN_TOPIC,
})
_IGNORED = frozenset({KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT})
_SIGN_IN_HINT = ("check TRACKSTREAM_KAFKA_SECURITY_PROTOCOL, TRACKSTREAM_KAFKA_USERNAME and TRACKSTREAM_KAFKA_PASSWORD; "
                 "the events stay in the spool")
_ACL_HINT = "the Kafka user needs WRITE and DESCRIBE on the topic (docs/deploy.md, \"Authenticated brokers\")"
HINTS = {KafkaError._AUTHENTICATION: _SIGN_IN_HINT, KafkaError.SASL_AUTHENTICATION_FAILED: _SIGN_IN_HINT,
         KafkaError.TOPIC_AUTHORIZATION_FAILED: _ACL_HINT}

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class SpoolWarning(RuntimeWarning):
    """Events are waiting on local disk instead of being in Kafka."""


def default_spool_root() -> Path:
    return default_home() / "spool"


def producer_settings(bootstrap: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {"bootstrap.servers": bootstrap, **PRODUCER_DEFAULTS, **(overrides or {})}


class SpoolShipper:
    """Moves a spool's records to Kafka in spool order; not thread-safe (one thread drives it).

    Call ``step`` repeatedly; ``cursor`` is the in-memory delivered position, persisted to the
    spool at most every ``PERSIST_INTERVAL_S`` (a crash in between only causes re-sends).
    """

    def __init__(self, spool: DiskSpool, bootstrap: str, topic: str,
                 producer_config: Mapping[str, Any] | None = None, *,
                 max_in_flight: int = MAX_IN_FLIGHT, max_in_flight_bytes: int = MAX_IN_FLIGHT_BYTES,
                 on_progress: Callable[[int], None] | None = None) -> None:
        self.spool = spool
        self.bootstrap = bootstrap
        self.topic = topic
        self._config = producer_settings(bootstrap, producer_config)
        self._max_in_flight = max_in_flight
        self._max_in_flight_bytes = max_in_flight_bytes
        self._on_progress = on_progress
        self._producer: Producer | None = None
        self._generation = 0
        self.cursor = spool.delivered_position
        self._persisted = self.cursor
        self._last_persist = time.monotonic()
        self._next = self.cursor + 1
        self._acked: set[int] = set()
        self._skipped: set[int] = set()
        self._in_flight = 0
        self._in_flight_bytes = 0
        self._reset_at: float | None = None
        self._backoff = BACKOFF_INITIAL_S
        self._unreachable_since: float | None = None
        self._last_report = self._last_probe = time.monotonic()
        self._answering_since: float | None = None
        self._errors: list[str] = []
        self._errors_lock = threading.Lock()
        self.delivered_count = 0
        # Highest acknowledged offset per partition: what a reader sends so the gateway can wait
        # until these writes are materialized (read-your-writes, trackstream/read_protocol.py).
        self.acked_offsets: dict[int, int] = {}
        self._producer = self._new_producer()  # here, so that a bad configuration fails loudly and early

    @property
    def pending(self) -> int:
        return self.spool.next_position - 1 - self.cursor

    def step(self) -> bool:
        """Produce what the spool holds (up to the in-flight bound), serve callbacks, advance the
        cursor. Returns whether anything is still outstanding."""
        now = time.monotonic()
        if self._reset_at is not None:
            if now < self._reset_at:
                time.sleep(min(POLL_S, self._reset_at - now))
                return True
            self._reset()
        if self._producer is None:
            self._producer = self._new_producer()
        self._fill()
        self._producer.poll(POLL_S if self._in_flight else 0)
        self._advance()
        now = time.monotonic()
        self._maybe_persist(now)
        if self._in_flight and now - self._last_report > PROBE_S and now - self._last_probe > PROBE_S:
            self._check_stall(now)
        return self._in_flight > 0 or self._next < self.spool.next_position or self._reset_at is not None

    def drain(self, deadline: float, stop: threading.Event | None = None) -> int:
        """Step until everything is delivered, ``deadline`` (monotonic) passes or ``stop`` is set;
        returns the records still pending."""
        while self.pending > 0 and time.monotonic() < deadline and not (stop and stop.is_set()):
            self.step()
        self.persist()
        return self.pending

    def persist(self) -> None:
        if self.cursor > self._persisted:
            self.spool.mark_delivered(self.cursor)
            self._persisted = self.cursor
            if self._on_progress is not None:
                self._on_progress(0)
        self._last_persist = time.monotonic()

    def close(self) -> None:
        """Drop the Producer (whatever it still holds stays in the spool) and persist the cursor."""
        self._drop_producer()
        self.persist()

    def take_errors(self) -> list[str]:
        with self._errors_lock:
            errors, self._errors = self._errors, []
        return errors

    def fail(self, reason: str) -> None:
        """Re-produce everything after the cursor on a new Producer after a backoff."""
        if self._reset_at is None:
            log.warning("delivery to %s on %s failed (%s); retrying from the spool in %.1f s",
                        self.topic, self.bootstrap, reason, self._backoff)
            self._reset_at = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, BACKOFF_MAX_S)

    # internals -------------------------------------------------------------------------------
    def _new_producer(self) -> Producer:
        config = dict(self._config, logger=librdkafka_log,
                      error_cb=functools.partial(self._on_error, self._generation))
        try:
            return Producer(config)
        except (KafkaException, TypeError, ValueError) as exc:
            raise DeliveryError(f"invalid Kafka producer configuration: {exc}") from exc

    def _drop_producer(self) -> None:
        old, self._producer = self._producer, None
        self._generation += 1
        if old is not None:
            old.purge()
            old.poll(0)
        self._acked.clear()
        self._in_flight = 0
        self._in_flight_bytes = 0

    def _check_stall(self, now: float) -> None:
        """Messages in flight, yet no delivery report while the broker has been answering metadata
        requests for ``STALL_S``: the Producer is wedged (seen once, right after a broker restart,
        with no progress for a minute), so replace it. Re-sending from the cursor is always safe."""
        self._last_probe = now
        try:
            self._producer.list_topics(self.topic, timeout=2)
        except KafkaException:
            self._answering_since = None  # the broker is away: waiting is right
            return
        since = max(self._answering_since or now, self._last_report)
        self._answering_since = since
        if now - since >= STALL_S:
            self._answering_since = None
            self.fail(f"no delivery report for {now - since:.0f} s with {self._in_flight} message(s) in flight "
                      "although the broker answers")

    def _reset(self) -> None:
        self._drop_producer()
        self._next = self.cursor + 1
        self._reset_at = None

    def _fill(self) -> None:
        producer = self._producer
        assert producer is not None
        while (self._in_flight < self._max_in_flight and self._in_flight_bytes < self._max_in_flight_bytes
               and self._next < self.spool.next_position and self._reset_at is None):
            try:
                records = self.spool.read_from(self._next, max_records=min(1000, self._max_in_flight - self._in_flight),
                                               max_bytes=self._max_in_flight_bytes - self._in_flight_bytes)
            except SpoolCorrupt as exc:
                self._report(f"{exc}; they are skipped")
                self._skipped.update(range(exc.position, exc.resume_position))
                self._next = exc.resume_position
                continue
            if not records:
                return
            generation = self._generation
            for position, key, payload in records:
                size = len(payload) + len(key) + HEADER_SIZE
                try:
                    producer.produce(self.topic, payload, key,
                                     on_delivery=functools.partial(self._on_delivery, generation, position, size))
                except BufferError:
                    return
                except KafkaException as exc:
                    err = exc.args[0]
                    if err.code() in UNDELIVERABLE:
                        self._undeliverable(position, err)
                        self._next = position + 1
                        continue
                    self.fail(f"{err.name()}: {err.str()}")
                    return
                if not self._in_flight:
                    self._last_report = time.monotonic()
                self._in_flight += 1
                self._in_flight_bytes += size
                self._next = position + 1

    def _on_delivery(self, generation: int, position: int, size: int, err: KafkaError | None, msg: Any) -> None:
        if generation != self._generation:
            return
        self._in_flight -= 1
        self._last_report = time.monotonic()
        self._in_flight_bytes -= size
        if err is None:
            self._acked.add(position)
            if msg is not None:
                self._note_offset(msg.partition(), msg.offset())
            return
        code = err.code()
        if code in UNDELIVERABLE:
            self._undeliverable(position, err)
        elif code not in _IGNORED:
            if code in REPORTED:
                self._report(f"delivery to {self.topic} failed: {err.name()}: {err.str()} (will keep retrying)", code)
            self.fail(f"{err.name()}: {err.str()}")

    def _note_offset(self, partition: int, offset: int) -> None:
        if offset > self.acked_offsets.get(partition, -1):
            self.acked_offsets[partition] = offset

    def _on_error(self, generation: int, err: KafkaError) -> None:
        if generation != self._generation:
            return
        if err.fatal():
            if err.code() in REPORTED:
                self._report(f"Kafka producer failed: {err.name()}: {err.str()} (will keep retrying)", err.code())
            self.fail(f"fatal producer error {err.name()}: {err.str()}")
        elif err.code() == KafkaError._ALL_BROKERS_DOWN:
            if self._unreachable_since is None and self.pending > 0:
                self._unreachable_since = time.monotonic()
                log.warning("Kafka at %s is unreachable (%s); events are kept in %s and will be delivered "
                            "when it is back", self.bootstrap, err.str(), self.spool.directory)
        elif err.code() in REPORTED:
            self._report(f"Kafka producer error: {err.name()}: {err.str()}", err.code())

    def _undeliverable(self, position: int, err: KafkaError) -> None:
        self._report(f"event at spool position {position} of {self.spool.directory} can never be delivered "
                     f"to {self.topic} and was skipped: {err.name()}: {err.str()}")
        self._skipped.add(position)

    def _report(self, message: str, code: int | None = None) -> None:
        if code in HINTS:
            message = f"{message} ({HINTS[code]})"
        log.error("%s", message)
        with self._errors_lock:
            if message not in self._errors:
                self._errors.append(message)

    def _advance(self) -> None:
        cursor, acked, skipped = self.cursor, self._acked, self._skipped
        delivered = 0
        while True:
            nxt = cursor + 1
            if nxt in acked:
                acked.discard(nxt)
                delivered += 1
            elif nxt in skipped:
                skipped.discard(nxt)
            else:
                break
            cursor = nxt
        if cursor == self.cursor:
            return
        self.cursor = cursor
        self.delivered_count += delivered
        self._backoff = BACKOFF_INITIAL_S
        if self._unreachable_since is not None:
            log.warning("Kafka at %s is reachable again after %.0f s; delivering %d spooled event(s)",
                        self.bootstrap, time.monotonic() - self._unreachable_since, self.pending)
            self._unreachable_since = None
        if self._on_progress is not None:
            self._on_progress(delivered)

    def _maybe_persist(self, now: float) -> None:
        if self.cursor > self._persisted and now - self._last_persist >= PERSIST_INTERVAL_S:
            self.persist()


class EventWriter:
    """One writer identity; sequences are per (writer, aggregate), which is what the consumer checks.

    When the spool reaches ``max_spool_bytes`` (the broker has been away long enough), ``append``
    blocks until deliveries free space instead of dropping events, after warning once
    (``SpoolWarning``): losing events silently is worse than a training loop that waits.
    """

    def __init__(self, bootstrap: str, topic: str, codec: EventCodec | None = None,
                 writer_id: str | None = None, producer_config: Mapping[str, Any] | None = None,
                 spool_dir: Path | None = None, *, max_spool_bytes: int = DEFAULT_MAX_BYTES,
                 deliver_leftovers: bool = True) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.codec = codec or default_codec()
        self.identity = WriterIdentity(writer_id)
        self.writer_id = self.identity.writer_id
        self._producer_config = dict(producer_config or {})
        self._max_message_bytes = int(producer_settings(bootstrap, producer_config)["message.max.bytes"])
        self._max_spool_bytes = max_spool_bytes
        self.spool_dir = Path(spool_dir) if spool_dir is not None else default_spool_root() / _dir_name(self.writer_id)
        self._new_sync_primitives()
        self._closed = False
        self._warned_full = False
        self._leftovers: threading.Thread | None = None
        self._start()
        if deliver_leftovers and _has_other_spools(self.spool_dir):
            self._leftovers = threading.Thread(target=self._deliver_leftovers, daemon=True,
                                               name=f"trackstream-resync-{self.writer_id[:8]}")
            self._leftovers.start()
        atexit.register(self._close_at_exit)
        _live_writers.add(self)

    def _new_sync_primitives(self) -> None:
        self._lock = threading.Lock()
        self._progress = threading.Condition()
        self._wake = threading.Event()
        self._stop = threading.Event()

    def _start(self) -> None:
        """Open the spool, build the shipper and start the sender thread."""
        self._spool = DiskSpool(self.spool_dir, self._max_spool_bytes, metadata={
            "writer_id": self.writer_id, "topic": self.topic, "bootstrap": self.bootstrap,
            "created_ms": int(time.time() * 1000),
        })
        try:
            self._seed_sequences()
            self._shipper = SpoolShipper(self._spool, self.bootstrap, self.topic, self._producer_config,
                                         on_progress=self._notify)
        except BaseException:
            self._spool.close(remove_if_delivered=True)
            raise
        self._sender = threading.Thread(target=self._send_loop, name=f"trackstream-sender-{self.writer_id[:8]}",
                                        daemon=True)
        self._sender.start()
        self._started = True

    def _after_fork_in_child(self) -> None:
        """Become a new writer in a forked child (see the module docstring); started on first use."""
        self._new_sync_primitives()
        if self._started:
            self._spool.abandon_in_forked_child()
        self._started = False
        self._leftovers = None
        self.identity = WriterIdentity()
        self.writer_id = self.identity.writer_id
        self.spool_dir = self.spool_dir.parent / _dir_name(self.writer_id)

    def _ensure_started(self) -> bool:
        """Start a forked child's writer on its first append; False if it has nothing to do yet."""
        if self._started:
            return True
        if self._closed:
            return False
        self._start()
        close_in_multiprocessing_child(self, self._close_at_exit, exitpriority=5)
        return True

    @property
    def delivered(self) -> int:
        """Events this writer has seen acknowledged by Kafka."""
        return self._shipper.delivered_count if self._started else 0

    @property
    def pending(self) -> int:
        return self._shipper.pending if self._started else 0

    def acknowledged_offsets(self) -> dict[int, int]:
        """Partition -> highest offset Kafka acknowledged for this writer's events (a copy)."""
        return dict(self._shipper.acked_offsets)

    def append(self, event_type: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Encode and spool one event; returns the full record. Never waits on the network."""
        with self._lock:
            if self._closed:
                raise DeliveryError(f"this EventWriter is closed; the {event_type} event was not recorded")
            self._ensure_started()
            agg, record = self.identity.next_record(event_type, fields)
            payload = self.codec.encode(event_type, record)
            key = agg.encode()
            if len(payload) + len(key) > self._max_message_bytes:
                raise DeliveryError(f"the {event_type} event is {len(payload)} bytes encoded; Kafka messages are "
                                    f"limited to {self._max_message_bytes} bytes (message.max.bytes)")
            try:
                self._spool.append(key, payload)
            except SpoolFull as full:
                self._wait_for_space(key, payload, full)
            self.identity.advance(agg, record["seq"])
        if not self._wake.is_set():
            self._wake.set()
        return record

    def _wait_for_space(self, key: bytes, payload: bytes, full: SpoolFull) -> None:
        if HEADER_SIZE + len(key) + len(payload) > self._spool.max_bytes:
            raise full
        message = (f"the trackstream event spool at {self.spool_dir} is full ({self._spool.size_bytes} bytes, "
                   f"bound {self._spool.max_bytes}) because Kafka at {self.bootstrap} has not taken events; "
                   f"logging calls now wait until the broker accepts events again")
        log.warning("%s", message)
        if not self._warned_full:
            self._warned_full = True
            warnings.warn(message, SpoolWarning, stacklevel=4)
        started = time.monotonic()
        while True:
            with self._progress:
                self._progress.wait(0.5)
            if self._stop.is_set() or not self._sender.is_alive():
                raise DeliveryError(f"the EventWriter was closed while waiting for space in {self.spool_dir}; "
                                    "the event was not recorded")
            try:
                self._spool.append(key, payload)
            except SpoolFull:
                continue
            log.warning("the event spool at %s has room again after %.0f s", self.spool_dir,
                        time.monotonic() - started)
            return

    def flush(self, timeout: float = 30.0) -> int:
        """fsync the spool and wait up to ``timeout`` s for Kafka; returns how many events are still
        not acknowledged. Raises DeliveryError only for problems waiting cannot fix (undeliverable
        events, authorization or topic errors), never because the broker is down."""
        if not self._started:
            return 0
        self._spool.sync()
        self._wait_delivered(self._spool.next_position - 1, timeout)
        self.raise_delivery_errors()
        return self._shipper.pending

    def _wait_delivered(self, target: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        self._wake.set()
        with self._progress:
            while self._shipper.cursor < target and self._sender.is_alive():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._progress.wait(min(remaining, 0.5))

    def raise_delivery_errors(self) -> None:
        errors = self._shipper.take_errors() if self._started else []
        if errors:
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            raise DeliveryError(f"events could not be delivered to {self.topic}: {errors[0]}{more}")

    def close(self, timeout: float = 30.0) -> int:
        """Wait up to ``timeout`` s for delivery, stop the sender and release the spool. Events not
        delivered stay in the spool directory for ``trackstream sync`` / the next start; returns
        how many."""
        if self._closed:
            return self.pending
        self._closed = True  # appends from here on raise; one blocked on a full spool is released below
        atexit.unregister(self._close_at_exit)
        if not self._started:
            return 0
        self._spool.sync()
        self._wait_delivered(self._spool.next_position - 1, timeout)
        self._stop.set()
        self._wake.set()
        self._sender.join(timeout=30)
        if self._leftovers is not None:
            self._leftovers.join(timeout=10)
        with self._lock:
            pending = self._spool.pending_count
            if self._sender.is_alive():
                log.error("the trackstream sender thread did not stop; %s stays locked until this process exits",
                          self.spool_dir)
            else:
                self._spool.close(remove_if_delivered=True)
        if pending:
            message = (f"{pending} event(s) were not delivered to Kafka at {self.bootstrap} (topic {self.topic}); "
                       f"they are kept in {self.spool_dir} and `trackstream sync` (or the next SDK start) "
                       f"will deliver them")
            log.warning("%s", message)
            warnings.warn(message, SpoolWarning, stacklevel=2)
        self.raise_delivery_errors()
        return pending

    def _close_at_exit(self) -> None:
        try:
            self.close(ATEXIT_CLOSE_TIMEOUT_S)
        except Exception as exc:  # interpreter exit: report, do not raise
            log.error("closing the trackstream EventWriter at exit: %s", exc)

    # background ------------------------------------------------------------------------------
    def _notify(self, delivered: int) -> None:
        with self._progress:
            self._progress.notify_all()

    def _send_loop(self) -> None:
        shipper, spool = self._shipper, self._spool
        next_sync = time.monotonic() + SYNC_INTERVAL_S
        try:
            while not self._stop.is_set():
                self._wake.clear()
                try:
                    spool.flush()
                    busy = shipper.step()
                    if time.monotonic() >= next_sync:
                        spool.sync()
                        next_sync = time.monotonic() + SYNC_INTERVAL_S
                except Exception as exc:  # the sender must outlive any surprise; the spool keeps the events
                    log.exception("trackstream sender: unexpected error; retrying from the spool")
                    shipper.fail(f"{type(exc).__name__}: {exc}")
                    busy = True
                if not busy:
                    self._wake.wait(IDLE_WAIT_S)
        finally:
            try:
                shipper.close()
            except Exception:
                log.exception("trackstream sender: closing the producer")
            self._notify(0)

    def _deliver_leftovers(self) -> None:
        """Deliver spools earlier writers left under the same root (retrying while the broker is away)."""
        from trackstream.producer.sync import sync_spools

        delays = iter(_backoff(*LEFTOVER_RETRY_S))
        while not self._stop.is_set():
            try:
                report = sync_spools(self.spool_dir.parent, self.bootstrap, self.topic, timeout=60.0,
                                     exclude=[self.spool_dir], producer_config=self._producer_config,
                                     stop=self._stop)
            except Exception:
                log.exception("delivering leftover trackstream spools")
            else:
                if report.remaining == 0:
                    if report.delivered:
                        log.info("delivered %d event(s) left behind by earlier trackstream processes",
                                    report.delivered)
                    return
            self._stop.wait(next(delays))

    def _seed_sequences(self) -> None:
        """A spool reopened under the same writer id may hold undelivered events; continue their
        sequences so the consumer does not take new events for duplicates."""
        position = self._spool.delivered_position + 1
        while position < self._spool.next_position:
            try:
                batch = self._spool.read_from(position, max_records=1000)
            except SpoolCorrupt as exc:
                position = exc.resume_position
                continue
            if not batch:
                break
            for _, key, payload in batch:
                try:
                    record = self.codec.decode(payload).record
                except Exception:
                    continue
                if record.get("writer_id") == self.writer_id:
                    self.identity.advance(key.decode(), int(record["seq"]))
            position = batch[-1][0] + 1


_live_writers: "weakref.WeakSet[EventWriter]" = weakref.WeakSet()


def _writers_after_fork_in_child() -> None:
    for writer in list(_live_writers):
        writer._after_fork_in_child()


os.register_at_fork(after_in_child=_writers_after_fork_in_child)


def close_in_multiprocessing_child(owner: object, close: Callable[[], Any], exitpriority: int) -> None:
    """A ``multiprocessing`` child ends with ``os._exit`` (no atexit) after running the finalizers
    of ``multiprocessing.util`` (higher priority first): register ``close`` there. Called from a
    fork hook, the registration is deferred to the child's after-fork callbacks, because the
    child clears the finalizers it inherited once the fork hooks have run."""
    import sys

    util = sys.modules.get("multiprocessing.util")
    if util is None:
        return
    util.Finalize(owner, close, exitpriority=exitpriority)
    util.register_after_fork(owner, lambda _: util.Finalize(owner, close, exitpriority=exitpriority))


def _dir_name(writer_id: str) -> str:
    return writer_id if _SAFE_NAME.match(writer_id) else uuid.uuid5(uuid.NAMESPACE_OID, writer_id).hex


def _has_other_spools(own: Path) -> bool:
    try:
        return any(p.is_dir() and not p.name.startswith(".") and p.name != own.name and DiskSpool.is_spool_dir(p)
                   for p in own.parent.iterdir())
    except OSError:
        return False


def _backoff(first: float, cap: float):
    delay = first
    while True:
        yield delay
        delay = min(delay * 2, cap)
