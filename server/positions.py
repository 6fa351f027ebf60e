"""A gateway without an in-process worker (``trackstream gateway``).

It follows the workers' materialized positions in ClickHouse (``consumers/positions.py``): each
poll first forgets the cached data of the runs the new rows changed, then advances the
read-your-writes marks (the same order the all-in-one server keeps, see ``server/run_cache.py``).
And a read waits for the topic's end offsets as of the read's start, not only for this gateway's
own acknowledged writes: the client's write may have gone through another gateway."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Mapping

from trackstream.consumers.positions import PositionLog, PositionRows, fold_changes
from trackstream.server.event_log import ReadYourWrites
from trackstream.server.run_cache import RunDataCache
from trackstream.server.write_state import WriteStateCache, forget_changes
from trackstream.errors import ServiceUnavailable

log = logging.getLogger("trackstream.gateway")

POLL_ERROR_BACKOFF_S = 1.0


class PositionFollower:
    def __init__(self, positions: PositionLog, consistency: ReadYourWrites, run_cache: RunDataCache,
                 interval_s: float, write_state: WriteStateCache | None = None) -> None:
        self.positions = positions
        self.consistency = consistency
        self.run_cache = run_cache
        self.write_state = write_state
        self.interval_s = interval_s
        self.seen: dict[int, int] = {}
        # Its own thread: polls never queue behind user reads (nor share their client's session).
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="positions")

    def apply(self, rows: PositionRows) -> None:
        positions, changes = fold_changes(rows)
        forget_changes(changes, positions, self.run_cache, self.write_state)  # before the marks move
        for partition, offset in positions.items():
            self.seen[partition] = max(offset, self.seen.get(partition, -1))
        if positions:
            self.consistency.record_materialized(positions)

    async def start(self) -> None:
        """Take the positions stored so far (nothing is cached yet, so nothing to forget)."""
        latest = await asyncio.get_running_loop().run_in_executor(self._executor, self.positions.latest)
        self.seen = dict(latest)
        self.consistency.record_materialized(latest)

    async def follow(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                rows = await loop.run_in_executor(self._executor, self.positions.changes_since, dict(self.seen))
            except Exception as exc:  # ClickHouse away: reads wait (and time out) until it is back
                log.warning("cannot read materialized positions, retrying: %s", exc)
                await asyncio.sleep(POLL_ERROR_BACKOFF_S)
                continue
            self.apply(rows)
            await asyncio.sleep(self.interval_s)


def last_offsets(high_watermarks: Mapping[int, int]) -> dict[int, int]:
    """The offset of the last event per partition from Kafka's high watermarks (next offset to be
    written); empty partitions have none."""
    return {p: hw - 1 for p, hw in high_watermarks.items() if hw > 0}


class TopicEnds:
    """The topic's high watermarks, one ListOffsets request per call."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, timeout_s: float = 10.0,
                 client_config: Mapping[str, str] | None = None) -> None:
        from confluent_kafka.admin import AdminClient

        self.topic = topic
        self.partitions = partitions
        self.timeout_s = timeout_s
        self._admin = AdminClient({"bootstrap.servers": bootstrap, **(client_config or {})})

    def high_watermarks(self) -> dict[int, int]:
        from confluent_kafka import TopicPartition
        from confluent_kafka.admin import OffsetSpec

        requests = {TopicPartition(self.topic, p): OffsetSpec.latest() for p in range(self.partitions)}
        futures = self._admin.list_offsets(requests, request_timeout=self.timeout_s)
        return {tp.partition: future.result().offset for tp, future in futures.items()}


class LogEndReadYourWrites(ReadYourWrites):
    """Read-your-writes when the write may have gone through another gateway (any load balancer
    does that): a read waits until the workers have materialized everything the topic held when
    the read began, which includes every write acknowledged before it, through any gateway."""

    def __init__(self, ends: Callable[[], Mapping[int, int]]) -> None:
        super().__init__()
        self.ends = ends

    async def wait(self, timeout: float) -> None:
        try:
            ends = await asyncio.get_running_loop().run_in_executor(None, self.ends)
        except Exception as exc:
            raise ServiceUnavailable(f"cannot read the event topic's end offsets from Kafka: {exc}") from exc
        marks = dict(self.acked)
        for partition, offset in last_offsets(ends).items():
            marks[partition] = max(offset, marks.get(partition, -1))
        await self.wait_for(marks, timeout)
