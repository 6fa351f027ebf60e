"""trackstream's own HTTP read API (`/api/ts/...`, `/health`, `/metrics`); the MLflow routes are in
``server.mlflow_api``. Handlers call a ``TrackingReader`` through ``run_query``, which runs the
blocking ClickHouse call on the server's read threads."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

from aiohttp import web

from trackstream.consumers.ingest_stats import IngestStats
from trackstream.consumers.replay import BackgroundReplay
from trackstream.server import json_codec
from trackstream.server.reader import TrackingReader
from trackstream.server.errors import error_middleware
from trackstream.errors import InvalidInput
from trackstream.moments import parse_moment

QueryRunner = Callable[..., Awaitable[Any]]
MAX_REQUEST_BYTES = 1_048_576
ARROW_STREAM = "application/vnd.apache.arrow.stream"


def json_response(payload: Any, status: int = 200) -> web.Response:
    return web.Response(body=json_codec.encode(payload), status=status, content_type="application/json")


def _int_param(request: web.Request, name: str, default: int, maximum: int) -> int:
    raw = request.query.get(name, str(default))
    if not (raw.isascii() and raw.isdigit()) or not 0 < int(raw) <= maximum:
        raise InvalidInput(f"query parameter {name!r} must be an integer between 1 and {maximum}, got {raw!r}")
    return int(raw)


async def read_body(request: web.Request) -> bytes:
    """The raw body; over ``MAX_REQUEST_BYTES``: 413 with an MLflow error body (aiohttp's own is plain text)."""
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise web.HTTPRequestEntityTooLarge(MAX_REQUEST_BYTES, content_type="application/json", text=json_codec.encode({
            "error_code": "INVALID_PARAMETER_VALUE",
            "message": f"Request body is larger than the {MAX_REQUEST_BYTES} byte limit"}).decode()) from None


async def _json_body(request: web.Request) -> dict[str, Any]:
    return json_codec.decode_object(await read_body(request))


def _as_of(request: web.Request) -> int | None:
    raw = request.query.get("as_of")
    return parse_moment(raw, "as_of") if raw else None


def _step_range(request: web.Request) -> tuple[int | None, int | None]:
    """Optional inclusive ``step_min`` / ``step_max``: the steps a zoomed chart shows."""
    ends = []
    for name in ("step_min", "step_max"):
        raw = request.query.get(name)
        try:
            ends.append(None if raw is None else int(raw))
        except ValueError:
            raise InvalidInput(f"query parameter {name!r} must be an integer step, got {raw!r}") from None
    if ends[0] is not None and ends[1] is not None and ends[0] > ends[1]:
        raise InvalidInput(f"step_min ({ends[0]}) must not be greater than step_max ({ends[1]})")
    return ends[0], ends[1]


def create_app(reader: TrackingReader, run_query: QueryRunner, stats: IngestStats,
               replay: BackgroundReplay | None = None) -> web.Application:
    app = web.Application(middlewares=[error_middleware], client_max_size=MAX_REQUEST_BYTES)
    routes = web.RouteTableDef()

    @routes.get("/health")
    async def health(request: web.Request) -> web.Response:
        return json_response({"status": "ok"})

    @routes.get("/api/ts/status")
    async def get_status(request: web.Request) -> web.Response:
        return json_response(stats.as_dict())

    @routes.get("/metrics")
    async def prometheus(request: web.Request) -> web.Response:
        return web.Response(text=stats.prometheus(), content_type="text/plain", charset="utf-8",
                            headers={"X-Prometheus-Format": "0.0.4"})

    @routes.get("/api/ts/runs")
    async def list_runs(request: web.Request) -> web.Response:
        limit = _int_param(request, "limit", 50, 10_000)
        return json_response({"runs": await run_query(reader.runs, limit, request.query.get("experiment_id"),
                                                      _as_of(request))})

    @routes.get("/api/ts/runs/{run_id}")
    async def get_run(request: web.Request) -> web.Response:
        return json_response({"run": await run_query(reader.run, request.match_info["run_id"], _as_of(request))})

    @routes.get("/api/ts/runs/{run_id}/lifecycle")
    async def run_lifecycle(request: web.Request) -> web.Response:
        return json_response({"events": await run_query(reader.run_lifecycle, request.match_info["run_id"])})

    @routes.get("/api/ts/runs/{run_id}/metrics/{key:.+}")
    async def metric_history(request: web.Request) -> web.Response:
        """Full history as JSON columns, or as an Arrow IPC stream with ``?format=arrow`` (or ``Accept:
        application/vnd.apache.arrow.stream``); with ``?buckets=N`` a downsample keeping min / max /
        last per bucket."""
        run_id, key = request.match_info["run_id"], request.match_info["key"]
        if "buckets" in request.query:
            buckets = _int_param(request, "buckets", 1000, 100_000)
            return json_response({"history": await run_query(reader.metric_downsampled, run_id, key, buckets,
                                                              _step_range(request))})
        wants = request.query.get("format", "json")
        if wants not in ("json", "arrow"):
            raise InvalidInput(f"query parameter 'format' must be json or arrow, got {wants!r}")
        if wants == "arrow" or ARROW_STREAM in request.headers.get("Accept", ""):
            body = await run_query(reader.metric_history_arrow, run_id, key, _as_of(request))
            return web.Response(body=body, content_type=ARROW_STREAM)
        return json_response({"history": await run_query(reader.metric_history, run_id, key, None, _as_of(request))})

    @routes.get("/api/ts/experiments/activity")
    async def experiment_activity(request: web.Request) -> web.Response:
        ids = request.query.getall("experiment_id", [])
        if not ids or len(ids) > 1000:
            raise InvalidInput(f"experiments/activity takes 1 to 1000 experiment_id parameters, got {len(ids)}")
        return json_response({"experiments": await run_query(reader.experiment_activity, ids)})

    @routes.get("/api/ts/compare")
    async def compare(request: web.Request) -> web.Response:
        run_ids = request.query.getall("run_id", [])
        key = request.query.get("key")
        if not run_ids or not key:
            raise InvalidInput("compare needs one or more run_id parameters and a key")
        if len(run_ids) > 100:
            raise InvalidInput(f"compare takes at most 100 runs, got {len(run_ids)}")
        return json_response(await run_query(reader.compare, run_ids, key))

    @routes.get("/api/ts/rejects")
    async def rejects(request: web.Request) -> web.Response:
        return json_response({"rejects": await run_query(reader.rejects, _int_param(request, "limit", 50, 10_000))})

    @routes.post("/api/ts/sql")
    async def sql(request: web.Request) -> web.Response:
        query = (await _json_body(request)).get("query")
        if not isinstance(query, str) or not query.strip():
            raise InvalidInput("body must be a JSON object with a non-empty string 'query'")
        return json_response(await run_query(reader.sql, query))

    @routes.post("/api/ts/replay")
    async def start_replay(request: web.Request) -> web.Response:
        if replay is None:
            raise InvalidInput("replay is not available on this server")
        body = await _json_body(request)
        until = body.get("until_ms")
        if until is not None and (not isinstance(until, int) or isinstance(until, bool) or until < 0):
            raise InvalidInput(f"until_ms must be a non-negative integer (Unix ms), got {until!r}")
        database = body.get("database")
        if database is not None and not isinstance(database, str):
            raise InvalidInput("database must be a string")
        started = await asyncio.get_running_loop().run_in_executor(
            None, replay.start, database, until, bool(body.get("replace", False)))
        return json_response(started, 202)

    @routes.get("/api/ts/replay")
    async def replay_status(request: web.Request) -> web.Response:
        if replay is None:
            raise InvalidInput("replay is not available on this server")
        return json_response(replay.status())

    app.add_routes(routes)
    return app
