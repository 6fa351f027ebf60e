"""The HTTP read API (trackstream's own routes; the MLflow gateway will sit beside them).

Handlers call a ``TrackingReader`` through ``run_query`` so that every ClickHouse call happens
on the worker's ClickHouse thread (the embedded engine belongs to one process).
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any, Awaitable, Callable

from aiohttp import web

from consumers.ingest_stats import IngestStats
from consumers.replay import BackgroundReplay
from server.reader import TrackingReader
from server.errors import error_middleware
from trackstream.errors import InvalidInput

QueryRunner = Callable[..., Awaitable[Any]]
MAX_REQUEST_BYTES = 1_048_576


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    if isinstance(obj, (bytes, bytearray)):
        return obj.decode("utf-8", "replace")
    return str(obj)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return "NaN" if math.isnan(obj) else ("Infinity" if obj > 0 else "-Infinity")
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def json_response(payload: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(_finite(payload), default=_json_default), status=status,
                        content_type="application/json")


def _int_param(request: web.Request, name: str, default: int, maximum: int) -> int:
    raw = request.query.get(name, str(default))
    if not raw.isdigit() or not 0 < int(raw) <= maximum:
        raise InvalidInput(f"query parameter {name!r} must be an integer between 1 and {maximum}, got {raw!r}")
    return int(raw)


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"request body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidInput("request body must be a JSON object")
    return body


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
        return json_response({"runs": await run_query(reader.runs, limit, request.query.get("experiment_id"))})

    @routes.get("/api/ts/runs/{run_id}")
    async def get_run(request: web.Request) -> web.Response:
        return json_response({"run": await run_query(reader.run, request.match_info["run_id"])})

    @routes.get("/api/ts/runs/{run_id}/metrics/{key:.+}")
    async def metric_history(request: web.Request) -> web.Response:
        history = await run_query(reader.metric_history, request.match_info["run_id"], request.match_info["key"])
        return json_response({"history": history})

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
