"""Reads of MLflow 3 LoggedModels and of a run's model inputs / outputs, shaped as MLflow's REST entities.
Parameterized SQL over the tables of migration 005, nothing else."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from clickhouse_connect.driver.client import Client

from trackstream.consumers.model_state import MLFLOW_STATUS
from trackstream.consumers.store import check_database_name
from trackstream.server.reader import log_cut
from trackstream.server.search import paginate

MODEL_COLUMNS = ("model_id", "experiment_id", "name", "model_type", "source_run_id", "artifact_location", "status",
                 "status_message", "lifecycle_stage", "creation_timestamp_ms", "last_updated_timestamp_ms")


def mlflow_logged_model(row: dict[str, Any], tags: list[tuple[str, str]], params: list[tuple[str, str]],
                        metrics: list[dict[str, Any]]) -> dict[str, Any]:
    """MLflow's LoggedModel JSON (``{info, data}``); empty optional strings are left out, as proto JSON does."""
    info: dict[str, Any] = {
        "model_id": row["model_id"], "experiment_id": row["experiment_id"], "name": row["name"],
        "creation_timestamp_ms": row["creation_timestamp_ms"],
        "last_updated_timestamp_ms": row["last_updated_timestamp_ms"],
        "artifact_uri": row["artifact_location"], "status": MLFLOW_STATUS[row["status"]],
    }
    for key in ("model_type", "source_run_id", "status_message"):
        if row[key]:
            info[key] = row[key]
    if tags:
        info["tags"] = [{"key": k, "value": v} for k, v in tags]
    data: dict[str, Any] = {}
    if params:
        data["params"] = [{"key": k, "value": v} for k, v in params]
    if metrics:
        data["metrics"] = metrics
    return {"info": info, "data": data}


class LoggedModelReader:
    def __init__(self, client: Client, database: str) -> None:
        self.client = client
        self.db = check_database_name(database)

    def _cut(self, as_of_ms: int | None) -> tuple[str, dict[str, Any]]:
        return ("1", {}) if as_of_ms is None else log_cut(self.client, self.db, as_of_ms)

    def rows(self, model_ids: list[str], as_of_ms: int | None = None) -> dict[str, dict[str, Any]]:
        """The latest row of each model (deleted ones included)."""
        cut, params = self._cut(as_of_ms)
        result = self.client.query(
            f"SELECT {', '.join(MODEL_COLUMNS)} FROM {self.db}.logged_models "
            f"WHERE model_id IN {{ids:Array(String)}} AND {cut} ORDER BY model_id, src_offset DESC LIMIT 1 BY model_id",
            parameters={"ids": model_ids, **params})
        return {row[0]: dict(zip(MODEL_COLUMNS, row)) for row in result.result_rows}

    def models(self, model_ids: list[str], as_of_ms: int | None = None) -> list[dict[str, Any]]:
        """LoggedModel entities in the order of ``model_ids`` (deleted ones included; callers decide)."""
        if not model_ids:
            return []
        rows = self.rows(model_ids, as_of_ms)
        cut, cut_params = self._cut(as_of_ms)
        params = {"ids": list(rows), **cut_params}
        tags: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for model_id, key, value in self.client.query(
                f"SELECT model_id, key, value FROM (SELECT * FROM {self.db}.logged_model_tags "
                f"WHERE model_id IN {{ids:Array(String)}} AND {cut} "
                f"ORDER BY model_id, key, src_offset DESC LIMIT 1 BY model_id, key) WHERE deleted = 0 "
                f"ORDER BY model_id, key", parameters=params).result_rows:
            tags[model_id].append((key, value))
        model_params: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for model_id, key, value in self.client.query(
                f"SELECT model_id, key, any(value) FROM {self.db}.logged_model_params "
                f"WHERE model_id IN {{ids:Array(String)}} AND {cut} GROUP BY model_id, key ORDER BY model_id, key",
                parameters=params).result_rows:
            model_params[model_id].append((key, value))
        metrics: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for model_id, run_id, key, value, step, ts, ds_name, ds_digest in self.client.query(
                f"SELECT model_id, run_id, key, value, step, timestamp_ms, dataset_name, dataset_digest "
                f"FROM {self.db}.logged_model_metrics WHERE model_id IN {{ids:Array(String)}} AND {cut} "
                f"ORDER BY model_id, key, step, timestamp_ms", parameters=params).result_rows:
            metric: dict[str, Any] = {"key": key, "value": value, "timestamp": ts, "step": step, "model_id": model_id}
            for name, text in (("run_id", run_id), ("dataset_name", ds_name), ("dataset_digest", ds_digest)):
                if text:
                    metric[name] = text
            metrics[model_id].append(metric)
        return [mlflow_logged_model(rows[m], tags[m], model_params[m], metrics[m]) for m in model_ids if m in rows]

    def model(self, model_id: str, as_of_ms: int | None = None) -> dict[str, Any] | None:
        found = self.models([model_id], as_of_ms)
        return found[0] if found else None

    def lifecycle_stage(self, model_id: str) -> str | None:
        row = self.rows([model_id]).get(model_id)
        return row["lifecycle_stage"] if row else None

    def params(self, model_id: str) -> dict[str, str]:
        return dict(self.client.query(
            f"SELECT key, any(value) FROM {self.db}.logged_model_params WHERE model_id = {{m:String}} GROUP BY key",
            parameters={"m": model_id}).result_rows)

    def committed_files(self, model_id: str) -> dict[str, tuple[int, str]]:
        """path -> (size, sha256) of every committed file of a model (the newest commit of a path)."""
        return {path: (size, sha) for path, size, sha in self.client.query(
            f"SELECT path, size, sha256 FROM {self.db}.logged_model_artifacts WHERE model_id = {{m:String}} "
            f"ORDER BY path, src_offset DESC LIMIT 1 BY path", parameters={"m": model_id}).result_rows}

    def search(self, sql: str, parameters: dict[str, Any], max_results: int,
               page_token: str | None) -> tuple[list[dict[str, Any]], str | None]:
        """Run a query of ``build_logged_model_search_query``: one page of LoggedModels and the next token."""
        ids, next_token = paginate([r[0] for r in self.client.query(sql, parameters=parameters).result_rows],
                                   max_results, page_token)
        return self.models(ids), next_token

    def run_points(self, run_id: str, keys: list[str]) -> set[tuple[str, int, int, float]]:
        """(key, step, timestamp, value) of a run's stored points of these keys."""
        return {(k, s, t, v) for k, s, t, v in self.client.query(
            f"SELECT key, step, timestamp_ms, value FROM {self.db}.metrics WHERE run_id = {{r:String}} "
            f"AND key IN {{keys:Array(String)}}", parameters={"r": run_id, "keys": keys}).result_rows}
