"""Who may fail an overdue run: the owner of its partition, once caught up with the log there."""

from trackstream.consumers.finalizer import FinalizeDeadline, OverdueRun, decidable_partitions


def test_only_assigned_partitions_whose_log_is_fully_stored_are_decidable():
    assigned = {0, 1, 2, 3}
    stored = {0: 41, 1: 9, 3: 5}  # last offset stored per partition
    highwaters = {0: 42, 1: 20, 2: 0, 3: 6, 4: 7}  # next offset to be written per partition
    assert decidable_partitions(assigned, stored, highwaters) == {0, 2, 3}


def test_a_partition_whose_log_end_is_unknown_yet_is_not_decidable():
    assert decidable_partitions({0}, {0: 5}, {}) == set()


def test_runs_on_partitions_another_worker_owns_or_still_catching_up_are_left_alone():
    deadline = FinalizeDeadline(timeout_s=1)
    overdue = [OverdueRun("r1", 0, ["a"]), OverdueRun("r2", 1, ["b"]), OverdueRun("r3", 0, ["c"])]
    assert [r.run_id for r in deadline.due(overdue, decidable={0})] == ["r1", "r3"]
    assert deadline.due(overdue, decidable={0, 1}) == [OverdueRun("r2", 1, ["b"])]  # r1, r3 already sent
