"""trackstream's own HTTP read API (`/api/ts/...`, `/health`, `/metrics`); the MLflow routes are in
``server.mlflow_api``. Handlers call a ``TrackingReader`` through ``run_query``, which runs the
blocking ClickHouse call on the server's read threads."""

from __future__ import annotations

import asyncio
import re
from typing import Any, Awaitable, Callable

import pyarrow as pa
from aiohttp import web

from trackstream.consumers.ingest_stats import IngestStats
from trackstream.consumers.replay import BackgroundReplay
from trackstream.server import json_codec
from trackstream.server.event_log import ReadYourWrites
from trackstream.server.mlflow_fields import decode_history_token, encode_history_token
from trackstream.server.reader import HistoryPosition, TrackingReader
from trackstream.server.errors import error_middleware
from trackstream.errors import InvalidInput, NotFound
from trackstream.moments import parse_moment
from trackstream.producer.validation import INT64_MAX, INT64_MIN
from trackstream.read_protocol import COLUMNS_MEDIA_TYPE, NEXT_PAGE_HEADER, WRITTEN_HEADER, encode_history_columns, parse_written

QueryRunner = Callable[..., Awaitable[Any]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_REQUEST_BYTES = 1_048_576
ARROW_STREAM = "application/vnd.apache.arrow.stream"
# Points per page of /api/ts/runs/{run}/metrics/{key} (default and cap): JSON text is ~10x the
# binary columns and costs far more to build, so its pages are smaller.
HISTORY_PAGE_MAX = {"json": 100_000, "arrow": 1_000_000, "columns": 1_000_000}
COMPARE_STEPS_MAX = 10_000   # steps per page of /api/ts/compare (default and cap)
HISTORY_MEDIA_TYPES = {"json": "application/json", "arrow": ARROW_STREAM, "columns": COLUMNS_MEDIA_TYPE}
_STEP_TOKEN = re.compile(r"s1:(-?\d{1,19})")


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


def written_marks_middleware(consistency: ReadYourWrites, topic: str, partitions: int,
                             timeout: float) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """Read-your-writes for writers that bypass the gateway: a request carrying the SDK's
    ``X-Trackstream-Written`` marks is answered only once the worker has materialized them."""

    @web.middleware
    async def wait_for_written(request: web.Request, handler: Handler) -> web.StreamResponse:
        header = request.headers.get(WRITTEN_HEADER)
        if header:
            written_topic, marks = parse_written(header)
            if written_topic != topic:
                raise InvalidInput(f"{WRITTEN_HEADER}: the client wrote to Kafka topic {written_topic!r}, but this "
                                   f"server materializes {topic!r}; point TRACKSTREAM_TOPIC (and TRACKSTREAM_KAFKA) "
                                   "at the server's")
            beyond = sorted(p for p in marks if p >= partitions)
            if beyond:
                raise InvalidInput(f"{WRITTEN_HEADER}: topic {topic!r} has {partitions} partitions, "
                                   f"the header names partition {beyond[0]}")
            await consistency.wait_for(marks, timeout)
        return await handler(request)

    return wait_for_written


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
        return json_response({"events": await run_query(reader.run_lifecycle, request.match_info["run_id"],
                                                        _as_of(request))})

    @routes.get("/api/ts/runs/{run_id}/metrics/{key:.+}")
    async def metric_history(request: web.Request) -> web.Response:
        """The history in keyset pages of at most ``limit`` points (default and cap:
        ``HISTORY_PAGE_MAX`` of the format): JSON columns, an Arrow IPC stream with ``?format=arrow``
        (or ``Accept: application/vnd.apache.arrow.stream``), or the numpy-decodable columns of
        ``trackstream/read_protocol.py`` with ``?format=columns``; the next page's ``page_token`` is
        in the ``X-Trackstream-Next-Page-Token`` header (and in JSON's ``next_page_token``). With
        ``?buckets=N`` a downsample keeping min / max / last per bucket."""
        run_id, key = request.match_info["run_id"], request.match_info["key"]
        if "buckets" in request.query:
            buckets = _int_param(request, "buckets", 1000, 100_000)
            body = await run_query(encoded_as, "history", reader.metric_downsampled, run_id, key, buckets,
                                   _step_range(request), _as_of(request))
            return web.Response(body=body, content_type="application/json")
        wants = request.query.get("format", "json")
        if wants not in ("json", "arrow", "columns"):
            raise InvalidInput(f"query parameter 'format' must be json, arrow or columns, got {wants!r}")
        if ARROW_STREAM in request.headers.get("Accept", ""):
            wants = "arrow"
        limit = _int_param(request, "limit", HISTORY_PAGE_MAX[wants], HISTORY_PAGE_MAX[wants])
        after = decode_history_token(request.query.get("page_token"))
        body, token = await run_query(history_page_body, reader, run_id, key, after, limit, _as_of(request), wants)
        return web.Response(body=body, content_type=HISTORY_MEDIA_TYPES[wants], headers=_next_page(token))

    @routes.get("/api/ts/experiments/activity")
    async def experiment_activity(request: web.Request) -> web.Response:
        ids = request.query.getall("experiment_id", [])
        if not ids or len(ids) > 1000:
            raise InvalidInput(f"experiments/activity takes 1 to 1000 experiment_id parameters, got {len(ids)}")
        return json_response({"experiments": await run_query(reader.experiment_activity, ids)})

    @routes.get("/api/ts/experiments/{experiment_id}/keys")
    async def experiment_keys(request: web.Request) -> web.Response:
        """Every param, metric and tag key of an experiment's runs (the UI's column picker)."""
        limit = _int_param(request, "limit", 1000, 10_000)
        return json_response(await run_query(reader.experiment_keys, request.match_info["experiment_id"], limit))

    @routes.get("/api/ts/compare")
    async def compare(request: web.Request) -> web.Response:
        """Runs aligned by step, in pages of at most ``limit`` steps (default and cap ``COMPARE_STEPS_MAX``)."""
        run_ids = request.query.getall("run_id", [])
        key = request.query.get("key")
        if not run_ids or not key:
            raise InvalidInput("compare needs one or more run_id parameters and a key")
        if len(run_ids) > 100:
            raise InvalidInput(f"compare takes at most 100 runs, got {len(run_ids)}")
        limit = _int_param(request, "limit", COMPARE_STEPS_MAX, COMPARE_STEPS_MAX)
        after = decode_step_token(request.query.get("page_token"))
        body, token = await run_query(compare_page_body, reader, run_ids, key, after, limit)
        return web.Response(body=body, content_type="application/json", headers=_next_page(token))

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


def encoded_as(name: str, read: Callable[..., Any], *args: Any) -> bytes:
    """``{name: read(*args)}`` as JSON bytes, for reads whose encoding is worth a read thread."""
    return json_codec.encode({name: read(*args)})


def _next_page(token: str | None) -> dict[str, str]:
    return {NEXT_PAGE_HEADER: token} if token else {}


def history_page_body(reader: TrackingReader, run_id: str, key: str, after: HistoryPosition | None, limit: int,
                      as_of_ms: int | None, wants: str) -> tuple[bytes, str | None]:
    """One page of the history route encoded as ``wants`` (json, arrow or columns) and the next
    page's token; runs on a read thread, so encoding never holds up the event loop."""
    page, position = reader.metric_history_page(run_id, key, after, limit, as_of_ms)
    token = encode_history_token(position) if position is not None else None
    if wants == "columns":
        return encode_history_columns(page["step"], page["value"], page["timestamp_ms"]), token
    if wants == "arrow":
        sink = pa.BufferOutputStream()
        table = pa.table({name: page[name] for name in ("step", "timestamp_ms", "value")})
        with pa.ipc.new_stream(sink, table.schema) as stream:
            stream.write_table(table)
        return sink.getvalue().to_pybytes(), token
    return json_codec.encode({"history": page, **({"next_page_token": token} if token else {})}), token


def encode_step_token(step: int) -> str:
    return f"s1:{step}"


def decode_step_token(token: str | None) -> int | None:
    """A compare ``page_token`` (the last step of the previous page) back into that step."""
    if not token:
        return None
    match = _STEP_TOKEN.fullmatch(token) if isinstance(token, str) else None
    if match is None or not INT64_MIN <= int(match.group(1)) <= INT64_MAX:
        raise InvalidInput(f"Invalid page token {token!r}: pass the next_page_token of the previous page")
    return int(match.group(1))


def compare_page_body(reader: TrackingReader, run_ids: list[str], key: str, after_step: int | None,
                      limit: int) -> tuple[bytes, str | None]:
    """One compare page as JSON bytes and the next page's token, built on a read thread."""
    aligned = reader.compare(run_ids, key, after_step, limit)
    token = encode_step_token(aligned["steps"][-1]) if aligned.pop("more") else None
    return json_codec.encode({**aligned, **({"next_page_token": token} if token else {})}), token


def model_state_routes(models: Any, run_query: QueryRunner) -> list[web.RouteDef]:
    """``GET /api/ts/models/{model_id}[?as_of=<time>]``: a logged model as MLflow's LoggedModel, or as
    it was at that moment (``models`` is a ``server.model_reader.LoggedModelReader``)."""

    async def get_model(request: web.Request) -> web.Response:
        model_id = request.match_info["model_id"]
        model = await run_query(models.model, model_id, _as_of(request))
        if model is None:
            raise NotFound(f"logged model {model_id!r} not found (at that time, or not materialized yet)")
        return json_response({"model": model})

    return [web.get("/api/ts/models/{model_id}", get_model)]
