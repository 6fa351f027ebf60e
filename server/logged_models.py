"""MLflow 3 LoggedModel operations over the event log (writes) and ClickHouse (reads).

The commit rule for models: a model's files reach the artifact store through the proxy's upload ->
verify (size, sha256) -> commit path, each committed file an event. A finalize READY is refused unless
the model's ``MLmodel`` file (the file every MLflow model declares itself in) and every file it names
are committed; the finalize event carries that manifest and the materializer, replaying the same
log, makes the model READY only if every listed path was committed before it. A model whose upload
was cut off therefore stays PENDING (or FAILED, when the client says so), and its files cannot be
downloaded, so ``load_model`` fails with the model's state in the message.
"""

from __future__ import annotations

from typing import Any, Callable

from trackstream.consumers.model_state import DELETED, FAILED, PENDING, READY
from trackstream.errors import InvalidInput, NotFound
from trackstream.producer import validation as v
from trackstream.server.mlflow_fields import json_int64
from trackstream.server.mlflow_service import MlflowService, list_of_dicts, optional_string
from trackstream.server.model_reader import LoggedModelReader, mlflow_logged_model
from trackstream.server.model_search import (SEARCH_LOGGED_MODELS_DEFAULT_MAX, build_logged_model_search_query,
                                             parse_datasets, parse_model_order_by)
from trackstream.server.model_files import MLMODEL, declared_files, missing_declared

_FINAL_STATUSES = {"LOGGED_MODEL_READY": READY, "LOGGED_MODEL_UPLOAD_FAILED": FAILED, 2: READY, 3: FAILED,
                   "2": READY, "3": FAILED}
_MODEL_ID_CHARS = frozenset("0123456789abcdef")


def check_model_id(model_id: Any) -> str:
    """MLflow's model ids are ``m-<32 hex>``; anything else cannot name a model (nor a path)."""
    if not isinstance(model_id, str) or not model_id:
        raise InvalidInput("Missing value for required parameter 'model_id'.")
    if not (model_id.startswith("m-") and len(model_id) == 34 and set(model_id[2:]) <= _MODEL_ID_CHARS):
        raise NotFound(f"Logged model with ID '{model_id}' not found.")
    return model_id


def final_status(status: Any) -> str:
    """FinalizeLoggedModel's status (enum name or number) -> READY | FAILED."""
    if status is None:
        raise InvalidInput("Missing value for required parameter 'status'.")
    try:
        return _FINAL_STATUSES[status]
    except (KeyError, TypeError):
        raise InvalidInput(f"Invalid value {status!r} for parameter 'status': a model is finalized as "
                           "LOGGED_MODEL_READY or LOGGED_MODEL_UPLOAD_FAILED") from None


def _point(metric: dict[str, Any]) -> tuple[Any, ...]:
    value = metric.get("value")
    return (metric.get("key"), metric.get("step") or 0, metric.get("timestamp"),
            float(value) if isinstance(value, (int, float)) else value)


def key_values(items: Any, name: str, validate_value: Any) -> list[dict[str, str]]:
    checked: dict[str, str] = {}
    for item in list_of_dicts(items, name):
        key = v.validate_key(item.get("key"), name[:-1])
        checked[key] = validate_value(key, optional_string(item.get("value"), "value"))
    return [{"key": k, "value": val} for k, val in checked.items()]


class LoggedModelService:
    def __init__(self, mlflow: MlflowService, reader: LoggedModelReader, database: str,
                 read_artifact: Callable[[str], bytes]) -> None:
        """``read_artifact(key)``: the bytes of a committed file of the artifact store (the MLmodel)."""
        self.mlflow = mlflow
        self.read_artifact = read_artifact
        self.reader = reader
        self.database = database
        self._experiments: dict[str, str] = {}

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        experiment = await self.mlflow.active_experiment(body.get("experiment_id"))
        experiment_id = experiment["experiment_id"]
        model_id = v.new_model_id()
        name = v.validate_model_name(body.get("name")) or model_id
        source_run_id = optional_string(body.get("source_run_id"), "source_run_id") or None
        if source_run_id is not None:
            await self.mlflow.known_run(source_run_id)
        record = await self.mlflow.appender.append("logged_model_created", {
            "model_id": model_id, "experiment_id": experiment_id, "name": name,
            "model_type": optional_string(body.get("model_type"), "model_type"), "source_run_id": source_run_id,
            "artifact_location": f"{self.mlflow.artifact_uri_prefix}/{experiment_id}/models/{model_id}/artifacts",
            "params": key_values(body.get("params"), "params", v.validate_param_value),
            "tags": key_values(body.get("tags"), "tags", v.validate_tag_value)})
        self._experiments[model_id] = experiment_id
        return {"model": self._entity_from_created(record)}

    @staticmethod
    def _entity_from_created(record: dict[str, Any]) -> dict[str, Any]:
        row = dict(record, status="PENDING", status_message="", lifecycle_stage="active",
                   source_run_id=record["source_run_id"] or "", creation_timestamp_ms=record["timestamp_ms"],
                   last_updated_timestamp_ms=record["timestamp_ms"])
        return mlflow_logged_model(row, [(t["key"], t["value"]) for t in record["tags"]],
                                   [(p["key"], p["value"]) for p in record["params"]], [])

    async def get(self, model_id: Any, allow_deleted: bool = False) -> dict[str, Any]:
        model_id = check_model_id(model_id)
        model = await self.mlflow.read(self.reader.model, model_id)
        if model is None or (not allow_deleted and await self._stage(model_id) == DELETED):
            raise NotFound(f"Logged model with ID '{model_id}' not found.")
        return model

    async def _stage(self, model_id: str) -> str | None:
        return await self.mlflow.read(self.reader.lifecycle_stage, model_id)

    async def active(self, model_id: Any) -> str:
        """The id of an existing, not deleted model (else RESOURCE_DOES_NOT_EXIST, as MLflow answers)."""
        model_id = check_model_id(model_id)
        if await self._stage(model_id) in (None, DELETED):
            raise NotFound(f"Logged model with ID '{model_id}' not found.")
        return model_id

    async def experiment_of(self, model_id: str) -> str:
        if model_id not in self._experiments:
            row = (await self.mlflow.read(self.reader.rows, [check_model_id(model_id)])).get(model_id)
            if row is None or row["lifecycle_stage"] == DELETED:
                raise NotFound(f"Logged model with ID '{model_id}' not found.")
            self._experiments[model_id] = row["experiment_id"]
        return self._experiments[model_id]

    async def finalize(self, model_id: Any, status: Any) -> dict[str, Any]:
        model_id = await self.active(model_id)
        wanted = final_status(status)
        manifest: list[str] = []
        if wanted == READY:
            committed = await self.mlflow.read(self.reader.committed_files, model_id)
            manifest = sorted(committed)
            declared = [MLMODEL]
            if MLMODEL in committed:
                key = f"{await self.experiment_of(model_id)}/models/{model_id}/artifacts/{MLMODEL}"
                declared += declared_files(await self.mlflow.run_query(self.read_artifact, key))
            missing = missing_declared(declared, frozenset(committed))
            if missing:
                raise InvalidInput(f"Logged model {model_id} cannot be READY: these files it declares were never "
                                   f"uploaded and committed: {', '.join(missing)}. It stays PENDING; upload them "
                                   "and finalize again, or finalize it as LOGGED_MODEL_UPLOAD_FAILED.")
        await self.mlflow.appender.append("logged_model_finalized",
                                          {"model_id": model_id, "status": wanted, "manifest": manifest})
        return {"model": await self.get(model_id)}

    async def delete(self, model_id: Any) -> None:
        model_id = await self.active(model_id)
        await self.mlflow.appender.append("logged_model_deleted", {"model_id": model_id})

    async def set_tags(self, model_id: Any, tags: Any) -> None:
        model_id = await self.active(model_id)
        checked = key_values(tags, "tags", v.validate_tag_value)
        if checked:
            await self.mlflow.appender.append("logged_model_tags_set", {"model_id": model_id, "tags": checked})

    async def delete_tag(self, model_id: Any, key: Any) -> None:
        model_id = await self.active(model_id)
        key = v.validate_key(key, "tag")
        model = await self.get(model_id)
        if not any(t["key"] == key for t in model["info"].get("tags", [])):
            raise NotFound(f"No tag with key {key!r} found for logged model with ID '{model_id}'.")
        await self.mlflow.appender.append("logged_model_tag_deleted", {"model_id": model_id, "key": key})

    async def log_params(self, model_id: Any, params: Any) -> None:
        model_id = await self.active(model_id)
        checked = key_values(params, "params", v.validate_param_value)
        known = await self.mlflow.read(self.reader.params, model_id)
        conflicts = [p["key"] for p in checked if p["key"] in known and known[p["key"]] != p["value"]]
        if conflicts:
            raise InvalidInput(f"Changing param values is not allowed. Params {conflicts} were already logged "
                               f"to logged model {model_id} with other values.")
        new = [p for p in checked if p["key"] not in known]
        if new:
            await self.mlflow.appender.append("logged_model_params_set", {"model_id": model_id, "params": new})

    async def log_metrics(self, run_id: str, metrics: list[dict[str, Any]]) -> None:
        """The model-tied metrics of a log-metric / log-batch (already validated and logged to the run)."""
        by_model: dict[str, list[dict[str, Any]]] = {}
        for m in metrics:
            model_id = optional_string(m.get("model_id"), "model_id")
            if not model_id:
                continue
            by_model.setdefault(model_id, []).append({
                "key": m["key"], "value": float(m["value"]), "timestamp_ms": json_int64(m["timestamp"], "timestamp"),
                "step": json_int64(m.get("step") or 0, "step"),
                "dataset_name": optional_string(m.get("dataset_name"), "dataset_name"),
                "dataset_digest": optional_string(m.get("dataset_digest"), "dataset_digest")})
        for model_id, points in by_model.items():
            await self.active(model_id)
            await self.mlflow.appender.append("logged_model_metrics_logged",
                                              {"model_id": model_id, "run_id": run_id, "metrics": points})

    async def new_run_points(self, run_id: Any, metrics: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """A log-batch's metrics without the model-tied ones the run already holds point for point.

        MLflow's ``log_model`` re-logs a run's metrics of its step with the new model's id; MLflow's
        store keeps one row per (key, step, timestamp, value), so the run's history does not grow.
        """
        tied = [m for m in metrics if isinstance(m, dict) and m.get("model_id")]
        if not tied or not isinstance(run_id, str):
            return metrics
        known = await self.mlflow.read(self.reader.run_points, run_id, sorted({str(m.get("key")) for m in tied}))
        return [m for m in metrics if not (m in tied and _point(m) in known)]

    async def link_run(self, run_id: Any, direction: str, models: Any) -> None:
        """A run's model inputs (log-inputs ``models``) or outputs (runs/outputs ``models``)."""
        run_id = v.validate_run_id(run_id)
        await self.mlflow.active_run(run_id)
        links = []
        for m in list_of_dicts(models, "models"):
            model_id = await self.active(m.get("model_id"))
            links.append({"model_id": model_id, "step": json_int64(m.get("step") or 0, "step")})
        if links:
            await self.mlflow.appender.append("run_models_linked",
                                              {"run_id": run_id, "direction": direction, "models": links})

    async def commit_artifact(self, model_id: str, path: str, size: int, sha256: str, uri: str) -> None:
        await self.mlflow.appender.append("logged_model_artifact_committed", {
            "model_id": model_id, "path": path, "size": size, "sha256": sha256, "uri": uri})

    async def experiment_for_upload(self, model_id: str) -> str:
        """The experiment of a model that may still take files: a READY or FAILED model's files are final."""
        row = (await self.mlflow.read(self.reader.rows, [check_model_id(model_id)])).get(model_id)
        if row is None or row["lifecycle_stage"] == DELETED:
            raise NotFound(f"Logged model with ID '{model_id}' not found.")
        if row["status"] != PENDING:
            raise InvalidInput(f"Logged model {model_id} is {row['status']}: its files are final, no more can be "
                               "uploaded")
        return row["experiment_id"]

    async def require_ready(self, model_id: str) -> None:
        """Files of a model are served only once it is READY: a half-uploaded model must not load."""
        row = (await self.mlflow.read(self.reader.rows, [check_model_id(model_id)])).get(model_id)
        if row is None or row["lifecycle_stage"] == DELETED:
            raise NotFound(f"Logged model with ID '{model_id}' not found.")
        if row["status"] != READY:
            why = f": {row['status_message']}" if row["status_message"] else \
                " (its upload never completed: the files it declares were not all committed)"
            raise NotFound(f"Logged model {model_id} is {row['status']}, not READY{why}; its files cannot be "
                           "downloaded or loaded")

    async def search(self, body: dict[str, Any]) -> dict[str, Any]:
        experiment_ids = body.get("experiment_ids")
        if not experiment_ids:
            raise InvalidInput("Missing value for required parameter 'experiment_ids'.")
        if not isinstance(experiment_ids, list) or not all(isinstance(e, str) for e in experiment_ids):
            raise InvalidInput("Invalid value for parameter 'experiment_ids': expected a list of strings")
        max_results = body.get("max_results") or SEARCH_LOGGED_MODELS_DEFAULT_MAX
        if isinstance(max_results, str) and max_results.isascii() and max_results.isdigit():
            max_results = int(max_results)
        filter_string = body.get("filter")
        if filter_string is not None and not isinstance(filter_string, str):
            raise InvalidInput("Invalid value for parameter 'filter': expected a string")
        page_token = body.get("page_token") or None
        sql, params = build_logged_model_search_query(
            self.database, experiment_ids, filter_string, parse_datasets(body.get("datasets")),
            parse_model_order_by(body.get("order_by")), max_results, page_token)
        models, next_token = await self.mlflow.read(self.reader.search, sql, params, max_results, page_token)
        result: dict[str, Any] = {"models": models} if models else {}
        if next_token:
            result["next_page_token"] = next_token
        return result
