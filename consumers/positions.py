"""The materialized positions every process can see: a worker records, after a batch is stored,
the last offset per partition and the runs the batch changed; gateways in other processes follow
those rows (``server/positions.py``) instead of an in-process callback.

Recorded *after* the batch's rows are stored, so a position read here never runs ahead of the
data. A batch re-delivered after a crash may record a position again; readers keep the maximum.
"""

from __future__ import annotations

from typing import Iterable, Mapping

from clickhouse_connect.driver.client import Client

from trackstream.consumers.materializer import BatchChanges, WriteStateChange
from trackstream.consumers.store import check_database_name

PositionRows = list[tuple[int, int, list[str], list[WriteStateChange]]]


def changes_query(database: str, seen: Mapping[int, int]) -> str:
    """Rows newer than ``seen`` (the highest offset already followed, per partition)."""
    database = check_database_name(database)
    if not seen:
        condition = "1"
    else:
        known = " AND ".join(f"src_partition != {int(p)}" for p in sorted(seen))
        newer = " OR ".join(f"(src_partition = {int(p)} AND src_offset > {int(o)})" for p, o in sorted(seen.items()))
        condition = f"({known}) OR {newer}"
    return (f"SELECT src_partition, src_offset, touched_runs, write_state FROM {database}.materialized_positions "
            f"WHERE {condition} ORDER BY src_partition, src_offset")


def fold_changes(rows: PositionRows) -> tuple[dict[int, int], BatchChanges]:
    """The highest offset per partition and everything changed, from followed rows."""
    positions: dict[int, int] = {}
    touched: set[str] = set()
    write_state: set[WriteStateChange] = set()  # a batch's changes come with each of its partitions' rows
    for partition, offset, runs, changes in rows:
        if offset > positions.get(int(partition), -1):
            positions[int(partition)] = int(offset)
        touched.update(runs)
        write_state.update((str(k), str(i), int(p), int(o)) for k, i, p, o in changes)
    return positions, BatchChanges(touched, sorted(write_state))


class PositionLog:
    def __init__(self, client: Client, database: str) -> None:
        self.client = client
        self.database = check_database_name(database)

    def record(self, positions: Mapping[int, int], changes: BatchChanges) -> None:
        """One row per partition of a stored batch (each carries all its changes: a reader needs
        only the rows past its marks)."""
        if not positions:
            return
        runs = sorted(changes.runs)
        self.client.insert(f"{self.database}.materialized_positions",
                           [[p, o, runs, changes.write_state] for p, o in sorted(positions.items())],
                           column_names=["src_partition", "src_offset", "touched_runs", "write_state"])

    def latest(self) -> dict[int, int]:
        """The highest stored offset per partition, including events stored before this table
        existed (an applied event is in ``events``, a refused one in ``rejects``)."""
        result = self.client.query(
            "SELECT src_partition, max(src_offset) FROM ("
            f"SELECT src_partition, src_offset FROM {self.database}.materialized_positions "
            f"UNION ALL SELECT src_partition, toInt64(max(src_offset)) FROM {self.database}.events GROUP BY src_partition "
            f"UNION ALL SELECT src_partition, toInt64(max(src_offset)) FROM {self.database}.rejects GROUP BY src_partition"
            ") GROUP BY src_partition")
        return {int(p): int(o) for p, o in result.result_rows}

    def changes_since(self, seen: Mapping[int, int]) -> PositionRows:
        return [(int(p), int(o), list(r), list(w))
                for p, o, r, w in self.client.query(changes_query(self.database, seen)).result_rows]
