"""Batch windows that a waiting reader can cut short.

The worker gathers events for up to a batch window (``TRACKSTREAM_BATCH_WINDOW_MS``) so the
fixed cost of a ClickHouse insert is shared by many events. A gateway read that must see a
write (read-your-writes) would wait out the rest of that window for nothing, so it raises a
:class:`FlushRequests` flag, and the batch is written once it holds an event and no further
event has arrived for ``QUIET_S``. That second condition matters under load: while a backlog
streams in, events arrive far more often than that, so batches still fill up to their maximum
instead of collapsing into one insert per event (which once stalled the worker behind 16
concurrent clients).

:func:`take_batches` is faust's ``Stream.take_events`` (which keeps its ack discipline: events
are acked only after the loop body that wrote them returns) with two additions: a stream
processor that notes each arriving event, and a wrapper around the stream's
``wait_for_stopped`` — the call ``take_events`` makes to wait out its window — that also
returns when a reader asks for a flush. The wrapper relies on that detail of faust-streaming
(pinned below 0.16 in pyproject.toml); the server's integration tests and the CI benchmark
run through it.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterator, Iterator, Sequence


QUIET_S = 0.002
"""How long a batch that a reader waits for must see no new event before it is written."""


class FlushRequests:
    """Shared by the gateway's readers and the worker, on one event loop."""

    def __init__(self, quiet_s: float = QUIET_S) -> None:
        self.urgent = asyncio.Event()
        self.quiet_s = quiet_s
        self.arrivals = 0
        self._readers_waiting = 0
        self._gathering = False

    @contextlib.contextmanager
    def reader_waiting(self) -> Iterator[None]:
        """Held by a read while it waits for the worker to pass its writes."""
        self._readers_waiting += 1
        if self._gathering:
            self.urgent.set()
        try:
            yield
        finally:
            self._readers_waiting -= 1

    def event_arrived(self) -> None:
        self.arrivals += 1
        self._gathering = True
        if self._readers_waiting:
            self.urgent.set()

    def batch_taken(self) -> None:
        self._gathering = False
        self.urgent.clear()

    async def wanted_now(self) -> None:
        """Returns once a reader waits for the batch being gathered and the stream has gone quiet."""
        await self.urgent.wait()
        seen = -1
        while seen != self.arrivals:
            seen = self.arrivals
            await asyncio.sleep(self.quiet_s)


async def _full_or_wanted(buffer_full: asyncio.Event, flush: FlushRequests) -> None:
    if buffer_full.is_set():
        return
    waiters = [asyncio.ensure_future(buffer_full.wait()), asyncio.ensure_future(flush.wanted_now())]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def take_batches(stream: Any, max_events: int, window_s: float,
                       flush: FlushRequests | None = None) -> AsyncIterator[Sequence[Any]]:
    """``stream.take_events(max_events, within=window_s)``; with ``flush``, a window also ends
    early once a reader is waiting, the batch holds an event and the stream has gone quiet."""
    if flush is None:
        async for events in stream.take_events(max_events, within=window_s):
            yield events
        return

    async def note_arrival(value: Any) -> Any:
        flush.event_arrived()
        return value

    wait_for_stopped = stream.wait_for_stopped

    async def wait_for_buffer_or_reader(buffer_full: asyncio.Event, timeout: float | None = None) -> bool:
        return await wait_for_stopped(_full_or_wanted(buffer_full, flush), timeout=timeout)

    stream.add_processor(note_arrival)  # before take_events adds its own: it runs first for each event
    stream.wait_for_stopped = wait_for_buffer_or_reader
    try:
        async for events in stream.take_events(max_events, within=window_s):
            flush.batch_taken()
            yield events
    finally:
        stream.wait_for_stopped = wait_for_stopped
        with contextlib.suppress(ValueError):
            stream._processors.remove(note_arrival)
