"""TrackingReader: the read side. Parameterized SQL over the materialized tables, nothing else."""

from __future__ import annotations

from typing import Any

from clickhouse_connect.driver.client import Client

from consumers.store import check_database_name
from trackstream.errors import InvalidInput, NotFound

READ_ONLY_SETTINGS = {"readonly": 1}


def _rows_as_dicts(result: Any) -> list[dict[str, Any]]:
    return [dict(zip(result.column_names, row)) for row in result.result_rows]


class TrackingReader:
    def __init__(self, client: Client, database: str) -> None:
        self.client = client
        self.db = check_database_name(database)

    def runs(self, limit: int = 50, experiment_id: str | None = None) -> list[dict[str, Any]]:
        where = "WHERE experiment_id = {exp:String}" if experiment_id is not None else ""
        result = self.client.query(
            f"SELECT run_id, run_name, experiment_id, status, start_time, end_time, lifecycle_stage, "
            f"missing_artifacts FROM {self.db}.runs_latest {where} ORDER BY start_time DESC, run_id LIMIT {{limit:UInt32}}",
            parameters={"limit": limit, "exp": experiment_id},
        )
        return _rows_as_dicts(result)

    def run(self, run_id: str) -> dict[str, Any]:
        result = self.client.query(
            f"SELECT * EXCEPT (src_partition, src_offset) FROM {self.db}.runs_latest WHERE run_id = {{r:String}}",
            parameters={"r": run_id},
        )
        rows = _rows_as_dicts(result)
        if not rows:
            raise NotFound(f"run {run_id!r} not found (it may not be materialized yet)")
        run = rows[0]
        run["params"] = dict(self.client.query(
            f"SELECT key, value FROM {self.db}.params WHERE run_id = {{r:String}} ORDER BY key",
            parameters={"r": run_id}).result_rows)
        run["tags"] = dict(self.client.query(
            f"SELECT key, value FROM {self.db}.tags_latest WHERE run_id = {{r:String}} ORDER BY key",
            parameters={"r": run_id}).result_rows)
        run["metrics"] = self.latest_metrics(run_id)
        return run

    def latest_metrics(self, run_id: str) -> dict[str, dict[str, Any]]:
        result = self.client.query(
            f"SELECT key, max(latest) AS l FROM {self.db}.latest_metrics WHERE run_id = {{r:String}} "
            f"GROUP BY key ORDER BY key", parameters={"r": run_id})
        return {key: {"step": l[0], "timestamp": l[1], "value": l[2]} for key, l in result.result_rows}

    def metric_history(self, run_id: str, key: str, limit: int | None = None) -> dict[str, list]:
        sql = (f"SELECT step, timestamp_ms, value FROM {self.db}.metrics "
               f"WHERE run_id = {{r:String}} AND key = {{k:String}} ORDER BY step, timestamp_ms")
        if limit is not None:
            sql += " LIMIT {limit:UInt64}"
        table = self.client.query_arrow(sql, parameters={"r": run_id, "k": key, "limit": limit})
        return {name: table.column(name).to_pylist() for name in ("step", "timestamp_ms", "value")}

    def rejects(self, limit: int = 50) -> list[dict[str, Any]]:
        result = self.client.query(
            f"SELECT received_at, reason, detail, event_type, event_id, aggregate_id, src_partition, src_offset "
            f"FROM {self.db}.rejects ORDER BY received_at DESC LIMIT {{limit:UInt32}}", parameters={"limit": limit})
        return _rows_as_dicts(result)

    def sql(self, query: str) -> dict[str, Any]:
        """Run user SQL with ClickHouse's readonly=1: the engine refuses writes, no parsing on our side."""
        try:
            result = self.client.query(query, settings=READ_ONLY_SETTINGS)
        except Exception as exc:
            raise InvalidInput(f"query failed: {exc}") from exc
        return {"columns": list(result.column_names), "rows": [list(r) for r in result.result_rows]}
