"""Materialized positions shared between processes: which rows a gateway still has to follow."""

import pytest

from trackstream.consumers.positions import changes_query, fold_changes
from trackstream.errors import StorageError


def test_nothing_seen_follows_every_row():
    assert "WHERE 1 ORDER BY src_partition, src_offset" in changes_query("db", {})


def test_follows_rows_past_each_seen_partition_and_all_rows_of_unseen_ones():
    query = changes_query("db", {0: 10, 3: 7})
    assert "FROM db.materialized_positions" in query
    assert "(src_partition != 0 AND src_partition != 3)" in query
    assert "(src_partition = 0 AND src_offset > 10)" in query
    assert "(src_partition = 3 AND src_offset > 7)" in query


def test_database_name_is_checked():
    with pytest.raises(StorageError):
        changes_query("db; DROP TABLE x", {})


def test_fold_keeps_highest_offset_per_partition_and_every_change():
    deleted = ("run", "b", 0, 8)
    positions, changes = fold_changes([(0, 5, ["a"], []), (0, 9, ["b"], [deleted]), (1, 3, [], [deleted]),
                                       (0, 7, ["c"], [("experiment", "7", 1, 2)])])
    assert positions == {0: 9, 1: 3}
    assert changes.runs == {"a", "b", "c"}
    assert changes.write_state == [("experiment", "7", 1, 2), deleted]  # once each, though two rows carry it
