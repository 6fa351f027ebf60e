"""MLflow Tracking operations over the event log (writes) and ClickHouse (reads).

Decisions MLflow makes synchronously — unknown run, deleted run, changed param value, duplicate
experiment name — are made here against a cache of what this gateway wrote, filled from
ClickHouse (after read-your-writes) on a miss and forgotten when another writer changes it
(server/write_state.py). A write that races another writer past this check is still caught by
the materializer and lands in the rejects table.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from trackstream.producer import validation as v
from trackstream.producer.inputs import MAX_DATASETS_PER_BATCH, dataset_input_from_json, dedupe_dataset_inputs
from trackstream.server.event_log import EventAppender, ReadYourWrites
from trackstream.server.mlflow_fields import MetricColumns, json_int64, metric_batch_from_json
from trackstream.server.reader import LOG_CUT, TrackingReader, mlflow_run_entity
from trackstream.server.write_state import WriteStateCache
from trackstream.errors import InvalidInput, NotFound, ResourceAlreadyExists
from trackstream.schemas.experiment_ids import (
    DEFAULT_EXPERIMENT_ID,
    DEFAULT_EXPERIMENT_NAME,
    candidate_experiment_ids,
    new_experiment_id,
)
from trackstream.moments import parse_moment
from trackstream.run_names import generated_run_name

RUN_STATUSES = ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED")
DEFAULT_EXPERIMENT = (DEFAULT_EXPERIMENT_ID, DEFAULT_EXPERIMENT_NAME)
READ_YOUR_WRITES_TIMEOUT_S = 30.0

QueryRunner = Callable[..., Awaitable[Any]]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class CachedRun:
    experiment_id: str
    lifecycle_stage: str = "active"
    params: dict[str, str] = field(default_factory=dict)


def log_batch_event(params: dict[str, str], metrics: Any, tags: list[dict[str, str]]) -> tuple[str, dict[str, Any]] | None:
    """The one event of a log-batch request (None when it has nothing new): ``params_set`` or
    ``tags_set`` when that is all it holds, otherwise ``metrics_logged`` carrying its points with
    its params and tags, which the materializer applies all together or not at all."""
    param_list = [{"key": k, "value": val} for k, val in params.items()]
    if not len(metrics):
        if param_list and not tags:
            return "params_set", {"params": param_list}
        if tags and not param_list:
            return "tags_set", {"tags": tags}
        if not param_list:
            return None
    return "metrics_logged", {**metric_batch_from_json(metrics).to_record_fields(), "params": param_list, "tags": tags}


class MlflowService:
    def __init__(self, appender: EventAppender, reader: TrackingReader, run_query: QueryRunner,
                 consistency: ReadYourWrites, artifact_uri_prefix: str = "mlflow-artifacts:",
                 write_state: WriteStateCache | None = None) -> None:
        self.appender = appender
        self.reader = reader
        self.run_query = run_query
        self.consistency = consistency
        self.artifact_uri_prefix = artifact_uri_prefix
        self.write_state = write_state or WriteStateCache()
        self._runs = self.write_state.runs  # run id -> CachedRun
        self._experiment_stages = self.write_state.experiment_stages  # experiment id -> lifecycle stage

    async def read(self, fn: Callable[..., Any], *args: Any) -> Any:
        await self.consistency.wait(READ_YOUR_WRITES_TIMEOUT_S)
        return await self.run_query(fn, *args)

    # experiments -----------------------------------------------------------------------------
    async def ensure_default_experiment(self) -> None:
        if await self.run_query(self.reader.experiment, DEFAULT_EXPERIMENT[0]) is None:
            await self.appender.append("experiment_created", {
                "experiment_id": DEFAULT_EXPERIMENT[0], "name": DEFAULT_EXPERIMENT[1],
                "artifact_location": f"{self.artifact_uri_prefix}/0", "tags": []})

    async def create_experiment(self, name: Any, artifact_location: Any = None, tags: Any = None) -> str:
        name = v.validate_experiment_name(name)
        tag_list = [{"key": v.validate_key(t.get("key"), "experiment tag"),
                     "value": v.validate_experiment_tag_value(t.get("key"), optional_string(t.get("value", ""), "value"))}
                    for t in list_of_dicts(tags, "tags")]
        if artifact_location:
            raise InvalidInput("artifact_location cannot be chosen by clients: artifacts live under the server's "
                               "artifact root (a client-chosen location is how MLflow's path-traversal CVEs began)")
        if await self.read(self.reader.experiment_by_name, name) is not None:
            raise ResourceAlreadyExists(f"Experiment '{name}' already exists.")
        taken = set()  # looked up in candidate order, up to the first free one
        for candidate in candidate_experiment_ids(name):
            if await self.run_query(self.reader.experiment, candidate) is None:
                break
            taken.add(candidate)
        experiment_id = new_experiment_id(name, taken)
        await self.appender.append("experiment_created", {
            "experiment_id": experiment_id, "name": name,
            "artifact_location": f"{self.artifact_uri_prefix}/{experiment_id}", "tags": tag_list})
        self._experiment_stages.put(experiment_id, "active")
        return experiment_id

    async def get_experiment(self, experiment_id: Any) -> dict[str, Any]:
        experiment_id = required_experiment_id(experiment_id)
        fetched_at = self._experiment_stages.generation()
        experiment = await self.read(self.reader.experiment, experiment_id)
        if experiment is None:
            raise NotFound(f"No Experiment with id={experiment_id} exists")
        self._experiment_stages.put(experiment_id, experiment["lifecycle_stage"], fetched_at)
        return experiment

    async def get_experiment_by_name(self, name: Any) -> dict[str, Any]:
        if not isinstance(name, str) or not name:
            raise InvalidInput("Missing value for required parameter 'experiment_name'.")
        experiment = await self.read(self.reader.experiment_by_name, name)
        if experiment is None:
            raise NotFound(f"Could not find experiment with name '{name}'")
        return experiment

    async def active_experiment(self, experiment_id: Any) -> dict[str, Any]:
        experiment = await self.get_experiment(experiment_id)
        _require_active_experiment(experiment["experiment_id"], experiment["lifecycle_stage"])
        return experiment

    async def active_experiment_id(self, experiment_id: Any) -> str:
        """Like ``active_experiment`` but from the cache when it can (the run-create hot path)."""
        experiment_id = required_experiment_id(experiment_id)
        stage = self._experiment_stages.get(experiment_id)
        if stage is None:
            stage = (await self.get_experiment(experiment_id))["lifecycle_stage"]
        _require_active_experiment(experiment_id, stage)
        return experiment_id

    async def rename_experiment(self, experiment_id: Any, new_name: Any) -> None:
        experiment = await self.active_experiment(experiment_id)
        new_name = v.validate_experiment_name(new_name)
        if await self.read(self.reader.experiment_by_name, new_name) is not None:
            raise ResourceAlreadyExists(f"Experiment '{new_name}' already exists.")
        await self.appender.append("experiment_renamed", {"experiment_id": experiment["experiment_id"],
                                                          "new_name": new_name})

    async def delete_experiment(self, experiment_id: Any) -> None:
        experiment = await self.active_experiment(experiment_id)
        await self.appender.append("experiment_deleted", {"experiment_id": experiment["experiment_id"]})
        self._experiment_stages.put(experiment["experiment_id"], "deleted")
        for run_id in await self.read(self.reader.run_ids_of_experiment, experiment["experiment_id"], "active"):
            await self._append_run_event("run_deleted", run_id, {})

    async def restore_experiment(self, experiment_id: Any) -> None:
        experiment = await self.get_experiment(experiment_id)
        if experiment["lifecycle_stage"] != "deleted":
            return
        await self.appender.append("experiment_restored", {"experiment_id": experiment["experiment_id"]})
        self._experiment_stages.put(experiment["experiment_id"], "active")
        for run_id in await self.read(self.reader.run_ids_of_experiment, experiment["experiment_id"], "deleted"):
            await self._append_run_event("run_restored", run_id, {})

    async def set_experiment_tag(self, experiment_id: Any, key: Any, value: Any) -> None:
        experiment = await self.active_experiment(experiment_id)
        key = v.validate_key(key, "experiment tag")
        await self.appender.append("experiment_tag_set", {"experiment_id": experiment["experiment_id"], "key": key,
                                                          "value": v.validate_experiment_tag_value(
                                                              key, optional_string(value, "value"))})

    async def delete_experiment_tag(self, experiment_id: Any, key: Any) -> None:
        experiment = await self.active_experiment(experiment_id)
        key = v.validate_key(key, "experiment tag")
        if not any(t["key"] == key for t in experiment.get("tags", [])):
            raise NotFound(f"No tag with name: {key} in experiment with id {experiment['experiment_id']}")
        await self.appender.append("experiment_tag_deleted", {"experiment_id": experiment["experiment_id"], "key": key})

    # runs ------------------------------------------------------------------------------------
    async def create_run(self, body: dict[str, Any]) -> dict[str, Any]:
        """Append run_created; the answer (MLflow's Run) is built from the event itself, so a create
        never waits for the worker."""
        experiment_id = await self.active_experiment_id(body.get("experiment_id"))
        tags = {t["key"]: t["value"] for t in self._tags(body.get("tags"))}
        run_name = optional_string(body.get("run_name"), "run_name")
        if run_name and tags.get("mlflow.runName", run_name) != run_name:
            raise InvalidInput(f"Both 'run_name' argument and 'mlflow.runName' tag are specified, but with "
                               f"different values (run_name='{run_name}', mlflow.runName='{tags['mlflow.runName']}').")
        run_name = run_name or tags.get("mlflow.runName") or generated_run_name()
        tags["mlflow.runName"] = run_name
        run_id = uuid.uuid4().hex
        start_time = json_int64(body.get("start_time", now_ms()), "start_time")
        record = await self.appender.append("run_created", {
            "run_id": run_id, "experiment_id": experiment_id, "run_name": run_name,
            "user_id": optional_string(body.get("user_id"), "user_id") or tags.get("mlflow.user", ""),
            "source_name": tags.get("mlflow.source.name", ""), "parent_run_id": tags.get("mlflow.parentRunId"),
            "start_time_ms": start_time, "tags": [{"key": k, "value": val} for k, val in tags.items()]})
        self._runs.put(run_id, CachedRun(experiment_id))
        return mlflow_run_entity(
            {"run_id": run_id, "run_name": run_name, "experiment_id": experiment_id,
             "user_id": record["user_id"], "status": "RUNNING", "start_time": start_time, "end_time": None,
             "lifecycle_stage": "active"},
            {"metrics": [], "params": [], "tags": sorted(record["tags"], key=lambda t: t["key"])})

    async def get_run(self, run_id: Any) -> dict[str, Any]:
        run_id = required_run_id(run_id)
        run = self.reader.run_with_own_writes(run_id)  # every write acknowledged here shows: no wait
        if run is None:
            run = await self.read(self.reader.mlflow_run, run_id)
        if run is None:
            raise NotFound(f"Run with id={run_id} not found")
        return run

    async def update_run(self, run_id: Any, status: Any, end_time: Any, run_name: Any) -> None:
        run = await self.active_run(run_id)
        run_name = optional_string(run_name, "run_name")
        if run_name:
            await self._append_run_event("tags_set", run_id, {"tags": [
                {"key": "mlflow.runName", "value": v.validate_tag_value("mlflow.runName", run_name)}]})
        if status is None:
            return
        if not isinstance(status, str) or status not in RUN_STATUSES:
            raise InvalidInput(f"Invalid value {status!r} for parameter 'status': use one of {', '.join(RUN_STATUSES)}")
        end = json_int64(end_time, "end_time") if end_time is not None else (now_ms() if status != "RUNNING" else None)
        if status == "FINISHED":
            await self._append_run_event("finalize_requested", run_id, {"end_time_ms": end, "manifest": []})
        else:
            await self._append_run_event("run_status_changed", run_id, {"status": status, "end_time_ms": end})
        del run

    async def delete_run(self, run_id: Any) -> None:
        run = await self.known_run(run_id)
        if run.lifecycle_stage != "deleted":
            await self._append_run_event("run_deleted", required_run_id(run_id), {})

    async def restore_run(self, run_id: Any) -> None:
        run = await self.known_run(run_id)
        if run.lifecycle_stage != "active":
            await self._append_run_event("run_restored", required_run_id(run_id), {})

    async def log_batch(self, run_id: Any, metrics: Any, params: Any, tags: Any) -> None:
        if not isinstance(metrics, MetricColumns):
            metrics = list_of_dicts(metrics, "metrics")
        params, tags = list_of_dicts(params, "params"), list_of_dicts(tags, "tags")
        v.validate_batch_sizes(len(metrics), len(params), len(tags))
        run_id = v.validate_run_id(run_id)
        run = await self.active_run(run_id)
        checked_params = self._params(params)
        conflicts = [{"key": k, "old_value": run.params[k], "new_value": val}
                     for k, val in checked_params.items() if k in run.params and run.params[k] != val]
        if conflicts:
            raise InvalidInput(f"Changing param values is not allowed. Params were already logged='{conflicts}' "
                               f"for run ID='{run_id}'.")
        new_params = {k: val for k, val in checked_params.items() if k not in run.params}
        checked_tags = self._tags(tags)
        event = log_batch_event(new_params, metrics, checked_tags)
        if event is not None:
            await self._append_run_event(event[0], run_id, event[1])
            run.params.update(new_params)

    async def log_inputs(self, run_id: Any, datasets: Any) -> None:
        """Append inputs_logged with the request's datasets, the first per (name, digest); the
        materializer also drops those the run already has."""
        items = list_of_dicts(datasets, "datasets")
        if len(items) > MAX_DATASETS_PER_BATCH:
            raise InvalidInput(f"A batch logging request can contain at most {MAX_DATASETS_PER_BATCH} datasets. "
                               f"Got {len(items)} datasets.")
        checked = dedupe_dataset_inputs(dataset_input_from_json(item) for item in items)
        run_id = required_run_id(run_id)
        await self.active_run(run_id)
        if checked:
            await self._append_run_event("inputs_logged", run_id, {"datasets": [d.to_record() for d in checked]})

    async def delete_tag(self, run_id: Any, key: Any) -> None:
        run_id = required_run_id(run_id)
        await self.active_run(run_id)
        key = v.validate_key(key, "tag")
        run = await self.read(self.reader.mlflow_run, run_id)
        if not run or not any(t["key"] == key for t in run["data"].get("tags", [])):
            raise NotFound(f"No tag with name: {key} in run with id {run_id}")
        await self._append_run_event("tag_deleted", run_id, {"key": key})

    async def commit_artifact(self, run_id: str, path: str, size: int, sha256: str, uri: str) -> None:
        await self._append_run_event("artifact_committed", run_id,
                                     {"path": path, "size": size, "sha256": sha256, "uri": uri})

    async def run_experiment(self, run_id: str) -> str:
        return (await self.known_run(run_id)).experiment_id

    async def search_runs(self, body: dict[str, Any], database: str) -> dict[str, Any]:
        from trackstream.server.search import build_search_query

        experiment_ids = body.get("experiment_ids") or []
        if not isinstance(experiment_ids, list) or not all(
                isinstance(e, (str, int)) and not isinstance(e, bool) for e in experiment_ids):
            raise InvalidInput("Invalid value for parameter 'experiment_ids': expected a list of experiment ids")
        view = body.get("run_view_type") or "ACTIVE_ONLY"
        if isinstance(view, int) and not isinstance(view, bool):
            view = {1: "ACTIVE_ONLY", 2: "DELETED_ONLY", 3: "ALL"}.get(view, view)
        if not isinstance(view, str):
            raise InvalidInput(f"Invalid value {view!r} for parameter 'run_view_type': expected ACTIVE_ONLY, "
                               "DELETED_ONLY or ALL")
        max_results = body.get("max_results", 1000)
        if isinstance(max_results, str) and max_results.isascii() and max_results.isdigit():
            max_results = int(max_results)
        order_by = body.get("order_by") or []
        if not isinstance(order_by, list) or not all(isinstance(o, str) for o in order_by):
            raise InvalidInput("Invalid value for parameter 'order_by': expected a list of strings")
        filter_string = body.get("filter")
        if filter_string is not None and not isinstance(filter_string, str):
            raise InvalidInput("Invalid value for parameter 'filter': expected a string")
        page_token = body.get("page_token")
        as_of = body.get("as_of")  # trackstream's extension: the runs as they were at that moment
        if as_of is not None and (isinstance(as_of, bool) or not isinstance(as_of, (str, int))):
            raise InvalidInput("Invalid value for parameter 'as_of': expected Unix milliseconds or an ISO time")
        as_of_ms = parse_moment(str(as_of), "as_of") if as_of not in (None, "") else None
        sql, params = build_search_query(database, [str(e) for e in experiment_ids], filter_string, order_by, view,
                                         max_results, page_token, None if as_of_ms is None else LOG_CUT)
        runs, next_token = await self.read(self.reader.search_mlflow_runs, sql, params, max_results, page_token,
                                           as_of_ms)
        result: dict[str, Any] = {"runs": runs}
        if next_token:
            result["next_page_token"] = next_token
        return result

    # helpers ---------------------------------------------------------------------------------
    async def known_run(self, run_id: Any) -> CachedRun:
        run_id = required_run_id(run_id)
        cached = self._runs.get(run_id)
        if cached is None:
            fetched_at = self._runs.generation()
            state = await self.read(self.reader.run_state_for_writes, run_id)
            if state is None:
                raise NotFound(f"Run with id={run_id} not found")
            cached = CachedRun(*state)
            self._runs.put(run_id, cached, fetched_at)
        return cached

    async def active_run(self, run_id: Any) -> CachedRun:
        run = await self.known_run(run_id)
        if run.lifecycle_stage != "active":
            raise InvalidInput(f"The run {run_id} must be in the 'active' state. Current state is "
                               f"{run.lifecycle_stage}.")
        return run

    async def _append_run_event(self, event_type: str, run_id: str, fields: dict[str, Any]) -> None:
        await self.appender.append(event_type, {"run_id": run_id, **fields})
        cached = self._runs.get(run_id)
        if cached is not None and event_type in ("run_deleted", "run_restored"):
            cached.lifecycle_stage = "deleted" if event_type == "run_deleted" else "active"

    @staticmethod
    def _params(params: list[dict[str, Any]]) -> dict[str, str]:
        checked: dict[str, str] = {}
        for p in params:
            key = v.validate_key(p.get("key"), "param")
            if key in checked:
                raise InvalidInput(f"Duplicate parameter keys have been submitted: ['{key}']. Please ensure the "
                                   "request contains only one param value per param key.")
            checked[key] = v.validate_param_value(key, optional_string(p.get("value"), "value"))
        return checked

    @staticmethod
    def _tags(tags: Any) -> list[dict[str, str]]:
        latest: dict[str, str] = {}
        for t in list_of_dicts(tags, "tags"):
            key = v.validate_key(t.get("key"), "tag")
            latest[key] = v.validate_tag_value(key, optional_string(t.get("value"), "value"))
        return [{"key": k, "value": val} for k, val in latest.items()]


def _require_active_experiment(experiment_id: str, stage: str) -> None:
    if stage != "active":
        raise InvalidInput(f"The experiment {experiment_id} must be in the 'active' state. Current state is {stage}.")


def list_of_dicts(items: Any, name: str) -> list[dict[str, Any]]:
    if items is None:
        return []
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise InvalidInput(f"Invalid value for parameter '{name}': expected a list of objects")
    return items


def optional_string(value: Any, name: str) -> str:
    """An optional string field (MLflow's ``_assert_string``): None is "", anything else but a string is refused."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInput(f"Invalid value {value!r} for parameter '{name}' supplied: expected a string, "
                           f"got {type(value).__name__}")
    return value


def required_run_id(run_id: Any) -> str:
    if not isinstance(run_id, str) or not run_id:
        raise InvalidInput("Missing value for required parameter 'run_id'.")
    return run_id


def required_experiment_id(experiment_id: Any) -> str:
    if experiment_id is None or experiment_id == "":
        raise InvalidInput("Missing value for required parameter 'experiment_id'.")
    text = str(experiment_id)
    if not (text.isascii() and text.isdigit()):
        raise InvalidInput(f"Invalid experiment ID '{text}'. Experiment ID must be a valid integer.")
    return text
