"""ReadYourWrites: a read waits for the writes acknowledged before it, and only for those."""

from __future__ import annotations

import asyncio

import pytest

from trackstream.server.event_log import ReadYourWrites
from trackstream.errors import ServiceUnavailable


def run(coro):
    return asyncio.run(coro)


def test_a_read_waits_until_the_worker_passes_every_acknowledged_offset():
    async def scenario():
        rw = ReadYourWrites()
        rw.record_ack(0, 10)
        rw.record_ack(3, 4)
        waiter = asyncio.create_task(rw.wait(5))
        await asyncio.sleep(0.01)
        rw.record_materialized({0: 10})
        await asyncio.sleep(0.01)
        assert not waiter.done()  # partition 3 is still behind
        rw.record_materialized({3: 4})
        await asyncio.wait_for(waiter, 1)

    run(scenario())


def test_writes_acknowledged_after_the_read_began_do_not_hold_it_back():
    async def scenario():
        rw = ReadYourWrites()
        rw.record_ack(0, 10)
        waiter = asyncio.create_task(rw.wait(5))
        await asyncio.sleep(0.01)
        rw.record_ack(0, 500)  # a busy ingest stream keeps writing
        rw.record_materialized({0: 10})
        await asyncio.wait_for(waiter, 1)
        assert rw.pending() == {0: 500}

    run(scenario())


def test_a_worker_that_falls_behind_makes_the_read_fail_with_the_pending_offsets():
    async def scenario():
        rw = ReadYourWrites()
        rw.record_ack(2, 7)
        rw.record_materialized({2: 5})
        with pytest.raises(ServiceUnavailable, match=r"\{2: 7\}"):
            await rw.wait(0.05)

    run(scenario())


def test_nothing_acknowledged_means_no_wait():
    run(asyncio.wait_for(ReadYourWrites().wait(5), 0.5))


def test_a_waiting_read_asks_the_worker_to_flush_and_stops_asking_once_served():
    from trackstream.consumers.batching import FlushRequests

    async def scenario():
        flush = FlushRequests()
        rw = ReadYourWrites(flush)
        rw.record_ack(0, 5)
        flush.event_arrived()
        waiter = asyncio.create_task(rw.wait(5))
        await asyncio.sleep(0.01)
        assert flush.urgent.is_set()
        flush.batch_taken()
        rw.record_materialized({0: 5})
        await asyncio.wait_for(waiter, 1)
        flush.event_arrived()
        assert not flush.urgent.is_set()

        await rw.wait(5)  # nothing pending: no flush asked for
        assert not flush.urgent.is_set()

    run(scenario())


def test_a_read_waits_for_marks_a_writer_outside_the_gateway_sent_and_not_for_the_gateways_own():
    async def scenario():
        rw = ReadYourWrites()
        rw.record_ack(0, 900)  # the gateway's own write, not yet materialized
        waiter = asyncio.create_task(rw.wait_for({1: 40}, 5))  # an SDK's marks
        await asyncio.sleep(0.01)
        rw.record_materialized({1: 39})
        await asyncio.sleep(0.01)
        assert not waiter.done()
        rw.record_materialized({1: 40})
        await asyncio.wait_for(waiter, 1)

    run(scenario())
