"""consumers.batching: when a waiting reader cuts the worker's batch window short."""

from __future__ import annotations

import asyncio

from trackstream.consumers.batching import FlushRequests, _full_or_wanted


def test_no_flush_without_a_waiting_reader() -> None:
    flush = FlushRequests()
    flush.event_arrived()
    assert not flush.urgent.is_set()


def test_a_reader_arriving_while_a_batch_gathers_flushes_it() -> None:
    flush = FlushRequests()
    flush.event_arrived()
    with flush.reader_waiting():
        assert flush.urgent.is_set()
    flush.batch_taken()
    assert not flush.urgent.is_set()


def test_a_waiting_reader_flushes_the_first_event_that_arrives_not_an_empty_batch() -> None:
    flush = FlushRequests()
    with flush.reader_waiting():
        assert not flush.urgent.is_set()  # nothing gathered: an empty window must not spin
        flush.event_arrived()
        assert flush.urgent.is_set()
        flush.batch_taken()
        assert not flush.urgent.is_set()
        flush.event_arrived()  # the reader's write may land in the next batch: still urgent
        assert flush.urgent.is_set()
    flush.batch_taken()
    flush.event_arrived()
    assert not flush.urgent.is_set()  # the reader has gone


def test_nested_readers_keep_the_flag_until_the_last_leaves() -> None:
    flush = FlushRequests()
    with flush.reader_waiting():
        with flush.reader_waiting():
            pass
        flush.event_arrived()
        assert flush.urgent.is_set()


def test_a_wanted_batch_waits_for_a_quiet_stream_so_a_backlog_still_fills_it() -> None:
    async def scenario() -> None:
        flush = FlushRequests(quiet_s=0.02)
        with flush.reader_waiting():
            wanted = asyncio.ensure_future(flush.wanted_now())
            for _ in range(5):  # a backlog: an event every 5 ms, well inside the quiet gap
                flush.event_arrived()
                await asyncio.sleep(0.005)
                assert not wanted.done()
            await asyncio.wait_for(wanted, 1)  # quiet for 20 ms: now the batch is wanted

    asyncio.run(scenario())


def test_full_or_wanted_returns_on_either_and_leaves_no_waiters_behind() -> None:
    async def scenario() -> None:
        full, flush = asyncio.Event(), FlushRequests(quiet_s=0.001)
        task = asyncio.ensure_future(_full_or_wanted(full, flush))
        await asyncio.sleep(0.01)
        assert not task.done()  # no reader, not full
        with flush.reader_waiting():
            flush.event_arrived()
            await asyncio.wait_for(task, 1)
        await asyncio.sleep(0)
        assert len(asyncio.all_tasks()) == 1  # only this scenario: the buffer_full waiter was cancelled

        flush.batch_taken()
        task = asyncio.ensure_future(_full_or_wanted(full, flush))
        full.set()
        await asyncio.wait_for(task, 1)
        await asyncio.sleep(0)
        assert len(asyncio.all_tasks()) == 1

    asyncio.run(scenario())
