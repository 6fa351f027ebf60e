"""MLflow Tracking REST API 2.0 routes (`/api/2.0/mlflow/...`, `/ajax-api/2.0/mlflow/...`) and the
mlflow-artifacts proxy. JSON in and out as MLflow has it; errors as ``{"error_code", "message"}``
with MLflow's HTTP statuses. The operations themselves live in ``MlflowService``."""

from __future__ import annotations

import asyncio
import mimetypes
import os
import tempfile
from pathlib import Path
from typing import Any, Awaitable, Callable
from urllib.parse import unquote

from aiohttp import web

from trackstream.producer.artifacts import (HASH_PROBLEM, ArtifactStore, ArtifactUploadError, ArtifactUploader, artifact_key,
                                            model_artifact_key, validate_artifact_path)
from trackstream.server import json_codec
from trackstream.server.http import json_response, read_body
from trackstream.server.experiment_search import build_experiment_search_query
from trackstream.server.mlflow_fields import decode_history_token, decode_log_batch, encode_history_token
from trackstream.server.logged_models import LoggedModelService
from trackstream.server.mlflow_service import MlflowService, list_of_dicts, required_run_id
from trackstream.server.reader import HistoryPosition, MlflowReader
from trackstream.server.search import SEARCH_MAX_RESULTS_DEFAULT, paginate
from trackstream.errors import InvalidInput, NotFound

PREFIXES = ("/api/2.0", "/ajax-api/2.0")
GET_HISTORY_DEFAULT_MAX = 25_000
GET_HISTORY_MAX = 25_000  # per page, the page the mlflow client asks for (GET_METRIC_HISTORY_MAX_RESULTS)
MAX_ARTIFACT_BYTES = 5 * 1024**3
MAX_ARTIFACT_KEY_BYTES = 2048


def ok(payload: dict[str, Any] | None = None) -> web.Response:
    return json_response(payload or {})


async def body_bytes(request: web.Request) -> bytes:
    if request.content_type != "application/json":
        raise InvalidInput("Bad Request. Content-Type must be one of ['application/json'].")
    return await read_body(request)


async def body_json(request: web.Request) -> dict[str, Any]:
    return json_codec.decode_object(await body_bytes(request))


def query_int(request: web.Request, name: str, default: int, maximum: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or not 0 < int(raw) <= maximum:
        raise InvalidInput(f"Invalid value {raw!r} for parameter '{name}' supplied: "
                           f"expected an integer between 1 and {maximum}")
    return int(raw)


def run_id_param(source: Any) -> str:
    return required_run_id(source.get("run_id") or source.get("run_uuid"))


def model_of(key: str) -> str | None:
    """The logged model a store key belongs to (``<experiment>/models/<model_id>/...``), if any."""
    parts = key.split("/")
    return parts[2] if len(parts) >= 3 and parts[1] == "models" else None


class ArtifactProxy:
    """`mlflow-artifacts` proxy: uploads are verified and committed through the event log. Run files live
    at ``<experiment>/<run>/artifacts/``, logged models' at ``<experiment>/models/<model_id>/artifacts/``;
    a model's files are served only once it is READY. Everything goes through ``store`` (the local
    one or S3, as ``TRACKSTREAM_ARTIFACT_STORE`` says); a request body is first received into a file
    in ``incoming`` (a local staging directory, collected like the stores' if the server dies)."""

    def __init__(self, service: MlflowService, store: ArtifactStore, incoming: Path,
                 models: LoggedModelService | None = None) -> None:
        self.service = service
        self.models = models
        self.store = store
        self.incoming = incoming

    @staticmethod
    def split(path: str) -> tuple[str, str, str]:
        """``<experiment>/<run>/artifacts/<relative path>`` -> (experiment, run, relative path);
        ``<experiment>/models/<model_id>/artifacts/<relative path>`` -> (experiment, "models/<model_id>", ...)."""
        parts = safe_artifact_path(path).split("/")
        if len(parts) >= 5 and parts[1] == "models" and parts[3] == "artifacts":
            return parts[0], f"models/{parts[2]}", "/".join(parts[4:])
        if len(parts) < 4 or parts[2] != "artifacts":
            raise InvalidInput(f"artifact path {path!r} must look like <experiment_id>/<run_id>/artifacts/<path> "
                               "or <experiment_id>/models/<model_id>/artifacts/<path>")
        return parts[0], parts[1], "/".join(parts[3:])

    async def _upload_target(self, experiment_id: str, owner: str, rel: str) -> tuple[str, str | None, Any]:
        """(id the commit is kept under, store key or None for a run's, async commit function)."""
        if owner.startswith("models/"):
            if self.models is None:
                raise NotFound("logged models are not served here")
            model_id = owner.removeprefix("models/")
            if await self.models.experiment_for_upload(model_id) != experiment_id:
                raise InvalidInput(f"logged model {model_id} does not belong to experiment {experiment_id}")
            return model_id, model_artifact_key(experiment_id, model_id, rel), self.models.commit_artifact
        if await self.service.run_experiment(owner) != experiment_id:
            raise InvalidInput(f"run {owner} does not belong to experiment {experiment_id}")
        return owner, None, self.service.commit_artifact

    async def upload(self, request: web.Request) -> web.Response:
        experiment_id, owner, rel = self.split(requested_path(request, request.match_info["path"]))
        owner_id, key, commit_fn = await self._upload_target(experiment_id, owner, rel)
        if request.content_length is not None and request.content_length > MAX_ARTIFACT_BYTES:
            raise InvalidInput(f"artifact is larger than the {MAX_ARTIFACT_BYTES} byte limit")
        self.incoming.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="incoming-", dir=self.incoming)
        loop = asyncio.get_running_loop()
        try:
            size = 0
            with os.fdopen(fd, "wb") as out:
                async for chunk in request.content.iter_chunked(1 << 20):
                    size += len(chunk)
                    if size > MAX_ARTIFACT_BYTES:
                        raise InvalidInput(f"artifact is larger than the {MAX_ARTIFACT_BYTES} byte limit")
                    out.write(chunk)

            def commit(owner_id: str, path: str, nbytes: int, sha256: str, uri: str) -> None:
                asyncio.run_coroutine_threadsafe(commit_fn(owner_id, path, nbytes, sha256, uri), loop).result(60)

            uploader = ArtifactUploader(self.store, commit, progress=False)
            try:
                await loop.run_in_executor(None, lambda: uploader.upload(owner_id, experiment_id, tmp, rel, key=key))
            except ArtifactUploadError as exc:
                if isinstance(exc.__cause__, (NotADirectoryError, IsADirectoryError, FileExistsError)):
                    raise InvalidInput(f"Invalid artifact path {rel!r}: it collides with an existing file or "
                                       "directory of the run") from exc
                raise
        finally:
            Path(tmp).unlink(missing_ok=True)
        return web.Response(status=200)

    async def _require_ready_model(self, key: str) -> None:
        model_id = model_of(key)
        if model_id is not None:
            if self.models is None:
                raise NotFound("logged models are not served here")
            await self.models.require_ready(model_id)

    def read_bytes(self, key: str) -> bytes:
        with self.store.open(safe_artifact_path(key)) as handle:
            return handle.read()

    async def download(self, request: web.Request) -> web.StreamResponse:
        key = safe_artifact_path(requested_path(request, request.match_info["path"]))
        await self._require_ready_model(key)
        loop = asyncio.get_running_loop()
        try:
            handle, size = await loop.run_in_executor(None, self.store.open_sized, key)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFound(f"artifact {key!r} not found") from None
        name = key.rsplit("/", 1)[-1]
        with handle:
            response = web.StreamResponse(headers={
                "Content-Disposition": f'attachment; filename="{name}"', "X-Content-Type-Options": "nosniff",
                "Content-Type": mimetypes.guess_type(name)[0] or "application/octet-stream"})
            response.content_length = size
            await response.prepare(request)
            while chunk := await loop.run_in_executor(None, handle.read, 1 << 20):
                await response.write(chunk)
        await response.write_eof()
        return response

    def children(self, key: str) -> list[dict[str, Any]] | None:
        """Immediate children of a directory key (basename, is_dir, size); None when it is a file."""
        key = safe_artifact_path(key) if key else ""
        files = self.store.list_files(key)
        if key and [f.key for f in files] == [key]:
            return None
        entries: dict[str, dict[str, Any]] = {}
        prefix = f"{key}/" if key else ""
        for stored in files:
            rest = stored.key[len(prefix):] if stored.key.startswith(prefix) else stored.key
            head, _, tail = rest.partition("/")
            if tail:
                entries[head] = {"path": head, "is_dir": True}
            else:
                entries[head] = {"path": head, "is_dir": False, "file_size": stored.size}
        return [entries[k] for k in sorted(entries)]

    async def rooted_listing(self, base: str, sub: str, root_uri: str) -> dict[str, Any]:
        """MLflow's ListArtifacts answer for the directory ``sub`` under the store key ``base``:
        ``{root_uri, files: [{path relative to the root, is_dir, file_size}]}``."""
        sub = trim_dir(sub)
        key = f"{base}/{safe_artifact_path(sub)}" if sub else base
        children = await asyncio.get_running_loop().run_in_executor(None, self.children, key) or []
        prefix = f"{sub}/" if sub else ""
        files = [dict(c, path=prefix + c["path"]) for c in children]
        return {"root_uri": root_uri, **({"files": files} if files else {})}

    async def list(self, request: web.Request) -> web.Response:
        path = checked_directory(requested_path(request, request.query.get("path", "")))
        await self._require_ready_model(path)
        children = await asyncio.get_running_loop().run_in_executor(None, self.children, path)
        return ok({} if children is None or not children else {"files": children})


def mlflow_routes(service: MlflowService, reader: MlflowReader, artifacts: ArtifactProxy,
                  search: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]],
                  models: LoggedModelService) -> list[web.RouteDef]:
    handlers: dict[tuple[str, str], Callable[[web.Request], Awaitable[web.StreamResponse]]] = {}

    def route(method: str, path: str) -> Callable:
        def register(fn: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> Callable:
            handlers[(method, path)] = fn
            return fn
        return register

    @route("POST", "/mlflow/experiments/create")
    async def create_experiment(request: web.Request) -> web.Response:
        body = await body_json(request)
        return ok({"experiment_id": await service.create_experiment(body.get("name"), body.get("artifact_location"),
                                                                    body.get("tags"))})

    @route("GET", "/mlflow/experiments/get")
    async def get_experiment(request: web.Request) -> web.Response:
        return ok({"experiment": await service.get_experiment(request.query.get("experiment_id"))})

    @route("GET", "/mlflow/experiments/get-by-name")
    async def get_experiment_by_name(request: web.Request) -> web.Response:
        return ok({"experiment": await service.get_experiment_by_name(request.query.get("experiment_name"))})

    async def search_experiments(source: dict[str, Any], order_by: Any) -> web.Response:
        view = source.get("view_type") or "ACTIVE_ONLY"
        view = {"1": "ACTIVE_ONLY", "2": "DELETED_ONLY", "3": "ALL"}.get(str(view), str(view))
        max_results = source.get("max_results") or SEARCH_MAX_RESULTS_DEFAULT
        if isinstance(max_results, str) and max_results.isascii() and max_results.isdigit():
            max_results = int(max_results)
        page_token = source.get("page_token") or None
        sql, parameters = build_experiment_search_query(reader.db, view, source.get("filter"), order_by, max_results,
                                                        page_token)
        rows = await service.read(reader.search_experiments, sql, parameters)
        page, next_token = paginate(rows, max_results, page_token)
        return ok({"experiments": page, **({"next_page_token": next_token} if next_token else {})})

    @route("POST", "/mlflow/experiments/search")
    async def search_experiments_post(request: web.Request) -> web.Response:
        body = await body_json(request)
        return await search_experiments(body, body.get("order_by"))

    @route("GET", "/mlflow/experiments/search")
    async def search_experiments_get(request: web.Request) -> web.Response:
        return await search_experiments(dict(request.query), request.query.getall("order_by", None))

    @route("POST", "/mlflow/experiments/update")
    async def update_experiment(request: web.Request) -> web.Response:
        body = await body_json(request)
        await service.rename_experiment(body.get("experiment_id"), body.get("new_name"))
        return ok()

    @route("POST", "/mlflow/experiments/delete")
    async def delete_experiment(request: web.Request) -> web.Response:
        await service.delete_experiment((await body_json(request)).get("experiment_id"))
        return ok()

    @route("POST", "/mlflow/experiments/restore")
    async def restore_experiment(request: web.Request) -> web.Response:
        await service.restore_experiment((await body_json(request)).get("experiment_id"))
        return ok()

    @route("POST", "/mlflow/experiments/set-experiment-tag")
    async def set_experiment_tag(request: web.Request) -> web.Response:
        body = await body_json(request)
        await service.set_experiment_tag(body.get("experiment_id"), body.get("key"), body.get("value"))
        return ok()

    @route("POST", "/mlflow/experiments/delete-experiment-tag")
    async def delete_experiment_tag(request: web.Request) -> web.Response:
        body = await body_json(request)
        await service.delete_experiment_tag(body.get("experiment_id"), body.get("key"))
        return ok()

    @route("POST", "/mlflow/runs/create")
    async def create_run(request: web.Request) -> web.Response:
        return ok({"run": await service.create_run(await body_json(request))})

    @route("GET", "/mlflow/runs/get")
    async def get_run(request: web.Request) -> web.Response:
        return ok({"run": await service.get_run(run_id_param(request.query))})

    @route("POST", "/mlflow/runs/update")
    async def update_run(request: web.Request) -> web.Response:
        body = await body_json(request)
        run_id = run_id_param(body)
        await service.update_run(run_id, body.get("status"), body.get("end_time"), body.get("run_name"))
        return ok({"run_info": (await service.get_run(run_id))["info"]})

    @route("POST", "/mlflow/runs/delete")
    async def delete_run(request: web.Request) -> web.Response:
        await service.delete_run(run_id_param(await body_json(request)))
        return ok()

    @route("POST", "/mlflow/runs/restore")
    async def restore_run(request: web.Request) -> web.Response:
        await service.restore_run(run_id_param(await body_json(request)))
        return ok()

    @route("POST", "/mlflow/runs/log-metric")
    async def log_metric(request: web.Request) -> web.Response:
        body = await body_json(request)
        metric = {k: body.get(k) for k in ("key", "value", "timestamp", "step")}
        await service.log_batch(run_id_param(body), [metric], [], [])
        if body.get("model_id"):
            await models.log_metrics(run_id_param(body), [body])
        return ok()

    @route("POST", "/mlflow/runs/log-parameter")
    async def log_param(request: web.Request) -> web.Response:
        body = await body_json(request)
        await service.log_batch(run_id_param(body), [], [{"key": body.get("key"), "value": body.get("value")}], [])
        return ok()

    @route("POST", "/mlflow/runs/set-tag")
    async def set_tag(request: web.Request) -> web.Response:
        body = await body_json(request)
        await service.log_batch(run_id_param(body), [], [], [{"key": body.get("key"), "value": body.get("value")}])
        return ok()

    @route("POST", "/mlflow/runs/delete-tag")
    async def delete_tag(request: web.Request) -> web.Response:
        body = await body_json(request)
        await service.delete_tag(run_id_param(body), body.get("key"))
        return ok()

    @route("POST", "/mlflow/runs/log-batch")
    async def log_batch(request: web.Request) -> web.Response:
        body = decode_log_batch(await body_bytes(request))
        metrics = body.get("metrics")
        if body["model_metrics"]:  # metrics tied to a logged model (decoded as objects)
            metrics = await models.new_run_points(body.get("run_id"), metrics)
        await service.log_batch(body.get("run_id"), metrics, body.get("params"), body.get("tags"))
        if body["model_metrics"]:
            await models.log_metrics(body["run_id"], body["model_metrics"])
        return ok()

    @route("POST", "/mlflow/runs/log-inputs")
    async def log_inputs(request: web.Request) -> web.Response:
        body = await body_json(request)
        list_of_dicts(body.get("models"), "models")  # checked before anything is appended
        await service.log_inputs(run_id_param(body), body.get("datasets"))
        await models.link_run(run_id_param(body), "INPUT", body.get("models"))
        return ok()

    @route("POST", "/mlflow/runs/outputs")
    async def log_outputs(request: web.Request) -> web.Response:
        body = await body_json(request)
        if not body.get("models"):
            raise InvalidInput("Missing value for required parameter 'models'.")
        await models.link_run(run_id_param(body), "OUTPUT", body.get("models"))
        return ok()

    @route("POST", "/mlflow/runs/search")
    async def search_runs(request: web.Request) -> web.Response:
        return ok(await search(await body_json(request)))

    @route("GET", "/mlflow/metrics/get-history")
    async def metric_history(request: web.Request) -> web.Response:
        run_id = run_id_param(request.query)
        key = request.query.get("metric_key")
        if not key:
            raise InvalidInput("Missing value for required parameter 'metric_key'.")
        await service.known_run(run_id)
        limit = query_int(request, "max_results", GET_HISTORY_DEFAULT_MAX, GET_HISTORY_MAX)
        after = decode_history_token(request.query.get("page_token"))
        body = await service.read(_history_page_body, reader, run_id, key, after, limit)
        return web.Response(body=body, content_type="application/json")

    @route("GET", "/mlflow/artifacts/list")
    async def list_run_artifacts(request: web.Request) -> web.Response:
        sub = checked_directory(requested_path(request, request.query.get("path", "")))
        run = await service.get_run(run_id_param(request.query))
        info = run["info"]
        base = artifact_key(info["experiment_id"], info["run_id"], "x")[:-2]
        return ok(await artifacts.rooted_listing(base, sub, info["artifact_uri"]))

    @route("POST", "/mlflow/logged-models")
    async def create_logged_model(request: web.Request) -> web.Response:
        return ok(await models.create(await body_json(request)))

    @route("GET", "/mlflow/logged-models/{model_id}")
    async def get_logged_model(request: web.Request) -> web.Response:
        allow_deleted = request.query.get("allow_deleted", "false").lower() == "true"
        return ok({"model": await models.get(request.match_info["model_id"], allow_deleted)})

    @route("PATCH", "/mlflow/logged-models/{model_id}")
    async def finalize_logged_model(request: web.Request) -> web.Response:
        body = await body_json(request)
        return ok(await models.finalize(request.match_info["model_id"], body.get("status")))

    @route("DELETE", "/mlflow/logged-models/{model_id}")
    async def delete_logged_model(request: web.Request) -> web.Response:
        await models.delete(request.match_info["model_id"])
        return ok()

    @route("POST", "/mlflow/logged-models/search")
    async def search_logged_models(request: web.Request) -> web.Response:
        return ok(await models.search(await body_json(request)))

    @route("PATCH", "/mlflow/logged-models/{model_id}/tags")
    async def set_logged_model_tags(request: web.Request) -> web.Response:
        await models.set_tags(request.match_info["model_id"], (await body_json(request)).get("tags"))
        return ok()

    @route("DELETE", "/mlflow/logged-models/{model_id}/tags/{tag_key}")
    async def delete_logged_model_tag(request: web.Request) -> web.Response:
        await models.delete_tag(request.match_info["model_id"], request.match_info["tag_key"])
        return ok()

    @route("POST", "/mlflow/logged-models/{model_id}/params")
    async def log_logged_model_params(request: web.Request) -> web.Response:
        await models.log_params(request.match_info["model_id"], (await body_json(request)).get("params"))
        return ok()

    @route("GET", "/mlflow/logged-models/{model_id}/artifacts/directories")
    async def list_logged_model_artifacts(request: web.Request) -> web.Response:
        sub = checked_directory(requested_path(request, request.query.get("artifact_directory_path", "")))
        model = await models.get(request.match_info["model_id"])
        info = model["info"]
        await models.require_ready(info["model_id"])
        base = model_artifact_key(info["experiment_id"], info["model_id"], "x")[:-2]
        return ok(await artifacts.rooted_listing(base, sub, info["artifact_uri"]))

    routes = []
    for (method, path), handler in handlers.items():
        for prefix in PREFIXES:
            routes.append(web.route(method, prefix + path, handler))
    for prefix in PREFIXES:
        routes += [web.put(prefix + "/mlflow-artifacts/artifacts/{path:.+}", artifacts.upload),
                   web.get(prefix + "/mlflow-artifacts/artifacts/{path:.+}", artifacts.download),
                   web.get(prefix + "/mlflow-artifacts/artifacts", artifacts.list)]
    return routes


def _history_page_body(reader: MlflowReader, run_id: str, key: str, after: HistoryPosition | None,
                       limit: int) -> bytes:
    """One get-history page as JSON bytes, built on the read thread (a 25k-point page is ~20 ms of
    encoding that should not hold up the event loop)."""
    page, position = reader.metric_history_page(run_id, key, after, limit)
    result: dict[str, Any] = {"metrics": json_codec.metric_points(key, page["step"], page["timestamp_ms"],
                                                                 page["value"])}
    if position is not None:
        result["next_page_token"] = encode_history_token(position)
    return json_codec.encode_finite(result)


def safe_artifact_path(path: Any) -> str:
    """``validate_artifact_path``, and again on the fully percent-decoded form (as MLflow's
    ``validate_path_is_safe`` does), so ``%252e%252e`` cannot become ``..`` in whatever decodes it next.
    Names longer than the filesystem allows are refused here rather than failing in ``open``."""
    key = validate_artifact_path(path)
    if len(key.encode()) > MAX_ARTIFACT_KEY_BYTES or any(len(p.encode()) > 255 for p in key.split("/")):
        shown = key if len(key) <= 80 else key[:80] + "..."
        raise InvalidInput(f"Invalid artifact path {shown!r}: at most 255 bytes per name and "
                           f"{MAX_ARTIFACT_KEY_BYTES} bytes in all")
    decoded = key
    for _ in range(8):
        once = unquote(decoded)
        if once == decoded:
            break
        decoded = once
    if decoded != key:
        if "#" in decoded:
            raise InvalidInput(f"Invalid artifact path {key!r}, percent-decoded to {decoded!r}: {HASH_PROBLEM}")
        validate_artifact_path(decoded, f"artifact path {key!r}, percent-decoded,")
    return key


def requested_path(request: web.Request, value: str) -> str:
    """An artifact path parameter (``value``, from the route or the query) as the client wrote it.
    aiohttp takes a raw '#' in the request target as the start of a URL fragment and drops the rest
    from the path and the query, so the request would act on a truncated path; the rest is put back
    here so that :func:`safe_artifact_path` refuses it, naming what was sent."""
    return f"{value}#{request.url.fragment}" if "#" in request.raw_path else value


def checked_directory(path: str) -> str:
    """A listing's directory parameter, trimmed and checked (empty: the root)."""
    path = trim_dir(path)
    return safe_artifact_path(path) if path else ""


def trim_dir(path: str) -> str:
    """A directory query parameter without its trailing slashes; a leading one stays so it is refused."""
    return path.rstrip("/") or path
