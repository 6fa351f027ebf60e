"""A gateway without a worker: followed positions forget cached runs before the marks move."""

from trackstream.server.event_log import ReadYourWrites
from trackstream.server.positions import PositionFollower
from trackstream.server.run_cache import RunDataCache


class RecordingCache(RunDataCache):
    def __init__(self, consistency: ReadYourWrites) -> None:
        super().__init__()
        self.consistency = consistency
        self.marks_when_invalidated: list[dict[int, int]] = []

    def invalidate(self, run_ids):
        self.marks_when_invalidated.append(dict(self.consistency.materialized))
        super().invalidate(run_ids)


def test_followed_rows_invalidate_runs_then_advance_marks():
    consistency = ReadYourWrites()
    cache = RecordingCache(consistency)
    cache.put_many({"r1": {"metrics": []}, "r2": {"metrics": []}}, cache.generation())
    follower = PositionFollower(positions=None, consistency=consistency, run_cache=cache, interval_s=1)
    follower.apply([(0, 4, ["r1"], []), (1, 2, [], [])])
    assert cache.marks_when_invalidated == [{}]  # forgotten while the marks had not moved yet
    assert cache.get_many(["r1", "r2"]).keys() == {"r2"}
    assert consistency.materialized == {0: 4, 1: 2}
    assert follower.seen == {0: 4, 1: 2}
    assert consistency.pending({0: 4, 1: 2}) == {}


def test_followed_write_state_changes_of_other_writers_are_forgotten_own_ones_kept():
    from trackstream.server.mlflow_service import CachedRun
    from trackstream.server.write_state import WriteStateCache

    write_state = WriteStateCache()
    for run_id in ("deleted-elsewhere", "deleted-here"):
        write_state.runs.put(run_id, CachedRun("0"))
    write_state.experiment_stages.put("7", "active")
    write_state.own_appends.add(1, 40)  # this gateway appended the event at partition 1, offset 40
    follower = PositionFollower(positions=None, consistency=ReadYourWrites(), run_cache=RunDataCache(),
                                interval_s=1, write_state=write_state)
    follower.apply([(0, 12, ["deleted-elsewhere"], [("run", "deleted-elsewhere", 0, 12), ("experiment", "7", 0, 11)]),
                    (1, 40, ["deleted-here"], [("run", "deleted-here", 1, 40)])])
    assert write_state.runs.get("deleted-elsewhere") is None
    assert write_state.experiment_stages.get("7") is None
    assert write_state.runs.get("deleted-here") == CachedRun("0")


def test_state_read_while_another_writer_changed_it_is_not_cached():
    from trackstream.server.mlflow_service import CachedRun
    from trackstream.server.write_state import WriteStateCache

    write_state = WriteStateCache()
    fetched_at = write_state.runs.generation()  # a gateway starts reading the run's state ...
    write_state.forget_changes([("run", "r", 2, 5)])  # ... while a batch changing it is stored
    write_state.runs.put("r", CachedRun("0"), fetched_at)
    assert write_state.runs.get("r") is None


def test_an_older_row_never_moves_a_mark_back():
    consistency = ReadYourWrites()
    follower = PositionFollower(positions=None, consistency=consistency, run_cache=RunDataCache(), interval_s=1)
    follower.apply([(0, 9, [], [])])
    follower.apply([(0, 3, [], [])])  # a batch re-delivered after a crash records its position again
    assert follower.seen == {0: 9} and consistency.materialized == {0: 9}


def test_last_offsets_skip_empty_partitions():
    from trackstream.server.positions import last_offsets

    assert last_offsets({0: 0, 1: 5, 2: 1}) == {1: 4, 2: 0}


def test_a_read_waits_for_the_topic_end_even_without_writes_of_its_own():
    import asyncio

    import pytest

    from trackstream.errors import ServiceUnavailable
    from trackstream.server.positions import LogEndReadYourWrites

    consistency = LogEndReadYourWrites(lambda: {0: 10, 1: 0})  # written through another gateway

    async def read_after_materialized() -> None:
        asyncio.get_running_loop().call_later(0.05, consistency.record_materialized, {0: 9})
        await consistency.wait(timeout=2)

    asyncio.run(read_after_materialized())
    with pytest.raises(ServiceUnavailable):
        asyncio.run(LogEndReadYourWrites(lambda: {0: 12}).wait(timeout=0.1))
