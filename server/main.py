"""`trackstream server`: one process that owns the embedded ClickHouse, runs the faust worker,
and serves the MLflow-compatible REST API and trackstream's own read API on the same event loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from aiohttp import web

from trackstream.consumers.replay import BackgroundReplay
from trackstream.consumers.ingest_stats import IngestStats
from trackstream.consumers.positions import PositionLog
from trackstream.consumers.store import SchemaManager, connect, connect_patiently, patiently
from trackstream.consumers.batching import FlushRequests
from trackstream.consumers.materializer import BatchChanges
from trackstream.consumers.worker import STARTUP_WAIT_S, MaterializerService, build_app
from trackstream.infra.topics import ensure_topics
from trackstream.server.auth import AuthConfig, auth_middleware, load_auth
from trackstream.server.password_checks import PasswordChecks
from trackstream.server.event_log import EventAppender, ReadYourWrites
from trackstream.server.request_identity import request_identity_middleware
from trackstream.server.http import create_app, model_state_routes, written_marks_middleware
from trackstream.server.mlflow_api import ArtifactProxy, mlflow_routes
from trackstream.server.logged_models import LoggedModelService
from trackstream.server.mlflow_service import READ_YOUR_WRITES_TIMEOUT_S, MlflowService
from trackstream.server.model_reader import LoggedModelReader
from trackstream.server.openapi import openapi_routes
from trackstream.server.positions import LogEndReadYourWrites, PositionFollower, TopicEnds
from trackstream.server.reader import MlflowReader
from trackstream.server.run_cache import RunDataCache
from trackstream.server.write_state import WriteStateCache, forget_changes
from trackstream.server.ui import is_ui_page, ui_routes
from trackstream.server.web_session import SessionStore, cookie_user, quiet_ui_challenges, session_routes
from trackstream.server.web_security import WebPolicy, install_web_security
from trackstream.config import Settings, redact_secrets
from trackstream.errors import InvalidInput
from trackstream.producer.artifacts import STAGING_DIR, open_artifact_store

READ_THREADS = 2
GATEWAY_STATUS_REFRESH_S = 2.0  # how fresh a gateway's lag figures are

log = logging.getLogger("trackstream.gateway")


def server_state_file(settings: Settings) -> Path:
    return settings.home / "server.json"


def server_state(settings: Settings, pid: int) -> dict[str, Any]:
    """What ``server.json`` records (the connection string with its password masked)."""
    return {"pid": pid, "url": settings.server_url, "clickhouse": redact_secrets(settings.clickhouse_dsn),
            "database": settings.database}


def startup_line(settings: Settings, auth: AuthConfig | None) -> str:
    return (f"trackstream server: HTTP on {settings.server_url} (MLflow API at {settings.server_url}/api/2.0/mlflow), "
            f"Kafka {settings.kafka_bootstrap}, ClickHouse {redact_secrets(settings.clickhouse_dsn)} "
            f"(database {settings.database}), "
            f"auth {f'on ({len(auth.users)} users)' if auth else 'off (loopback only)'}")


def serve(settings: Settings, loglevel: str = "warning") -> None:
    """All in one (``trackstream server``): the worker and the gateway share one event loop, so the
    worker's callback advances the read-your-writes marks directly."""
    import faust

    auth = load_auth(settings.auth_file, settings.server_host)
    settings.home.mkdir(parents=True, exist_ok=True)
    ensure_topics(settings)
    service = MaterializerService(settings)
    service.flush_requests = FlushRequests()
    consistency = ReadYourWrites(service.flush_requests)
    write_state = WriteStateCache()
    # The worker is in this process and says which events changed each run, so the read cache may
    # hold this gateway's own appends (server/run_cache.py).
    run_cache = RunDataCache(own_appends=write_state.own_appends)

    def on_materialized(positions: dict[int, int], changes: BatchChanges) -> None:
        forget_changes(changes, positions, run_cache, write_state)  # before the marks move: see server.run_cache
        consistency.record_materialized(positions)

    service.on_materialized = on_materialized
    # What earlier runs of the worker stored: an SDK's marks may name events materialized before
    # this process started, and no batch will ever report them again.
    consistency.record_materialized(service.stored_positions())
    gateway = Gateway(settings, auth, consistency, run_cache, service.stats, write_state)
    state_file = server_state_file(settings)

    async def start_http() -> None:
        # Recorded before the port answers: whoever sees /health answer also finds this file, and
        # so reads through HTTP instead of opening the embedded engine this process owns.
        await gateway.start(before_listening=lambda: state_file.write_text(
            json.dumps(server_state(settings, os.getpid()))))

    app = build_app(settings, service, start_http)
    try:
        faust.Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()
    finally:
        if state_file.exists() and json.loads(state_file.read_text()).get("pid") == os.getpid():
            state_file.unlink()


def serve_worker(settings: Settings, loglevel: str = "warning") -> None:
    """``trackstream worker``: one consumer-group member, no HTTP. Run N of them on a ClickHouse
    server; each records its materialized positions for the gateways (consumers/positions.py)."""
    import faust

    require_shared_clickhouse(settings, "worker")
    settings.home.mkdir(parents=True, exist_ok=True)
    ensure_topics(settings)
    service = MaterializerService(settings)
    print(f"trackstream worker: group {settings.consumer_group}, Kafka {settings.kafka_bootstrap}, "
          f"ClickHouse {redact_secrets(settings.clickhouse_dsn)} (database {settings.database})", flush=True)
    faust.Worker(build_app(settings, service), loglevel=loglevel, quiet=True).execute_from_commandline()


def serve_gateway(settings: Settings) -> None:
    """``trackstream gateway``: the HTTP API alone, stateless. Run M of them; read-your-writes
    marks advance from the positions the workers store in ClickHouse (server/positions.py)."""
    require_shared_clickhouse(settings, "gateway")
    auth = load_auth(settings.auth_file, settings.server_host)
    settings.home.mkdir(parents=True, exist_ok=True)
    ensure_topics(settings, dead_letters=False)
    schema = SchemaManager(connect_patiently(settings.clickhouse_dsn, STARTUP_WAIT_S, "migrate"), settings.database)
    patiently(schema.migrate, settings.clickhouse_dsn, STARTUP_WAIT_S, "migrating ClickHouse")
    topic_ends = TopicEnds(settings.kafka_bootstrap, settings.topic, settings.partitions,
                           client_config=settings.kafka_security.librdkafka_config())
    consistency = LogEndReadYourWrites(topic_ends.high_watermarks)
    run_cache = RunDataCache()
    write_state = WriteStateCache()
    follower = PositionFollower(PositionLog(connect(settings.clickhouse_dsn, "positions"), settings.database),
                                consistency, run_cache, settings.positions_poll_s, write_state)
    stats = IngestStats(role="gateway")
    gateway = Gateway(settings, auth, consistency, run_cache, stats, write_state)

    async def refresh_status() -> None:
        """What /api/ts/status and /metrics show on a gateway: the workers' positions and the lag
        behind the topic's end."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                stats.highwaters = await loop.run_in_executor(None, topic_ends.high_watermarks)
            except Exception as exc:  # Kafka away: keep the last known ends
                log.warning("cannot read the topic's end offsets for the status: %s", exc)
            stats.positions = dict(follower.seen)
            await asyncio.sleep(GATEWAY_STATUS_REFRESH_S)

    async def run() -> None:
        await follower.start()
        background = [asyncio.create_task(follower.follow()), asyncio.create_task(refresh_status())]
        await gateway.start()
        try:
            await asyncio.Event().wait()
        finally:
            for task in background:
                task.cancel()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


def require_shared_clickhouse(settings: Settings, role: str) -> None:
    if settings.clickhouse_dsn.startswith("chdb://"):
        raise InvalidInput(
            f"`trackstream {role}` shares ClickHouse with other processes, and the embedded engine "
            f"({settings.clickhouse_dsn}) belongs to one process: set TRACKSTREAM_CLICKHOUSE to a "
            "ClickHouse server (http://host:8123), or run the all-in-one `trackstream server`")


class Gateway:
    """The HTTP API (MLflow REST, trackstream's routes, web UI) over one ClickHouse and one topic."""

    def __init__(self, settings: Settings, auth: Any, consistency: ReadYourWrites, run_cache: RunDataCache,
                 stats: IngestStats, write_state: WriteStateCache | None = None) -> None:
        self.settings = settings
        self.write_state = write_state or WriteStateCache()
        self.auth = auth
        self.consistency = consistency
        self.stats = stats
        self.read_executor = ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="clickhouse-read")
        self.reader = MlflowReader(self.read_executor.submit(connect, settings.clickhouse_dsn, "read").result(),
                                   settings.database, run_cache)

    def _own_append_acknowledged(self, partition: int, offset: int, event_type: str, record: dict[str, Any]) -> None:
        self.write_state.own_appends.add(partition, offset)
        if record.get("run_id"):
            self.reader.run_cache.apply_own_append(record["run_id"], partition, offset, event_type, record)

    async def run_read(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.read_executor, fn, *args)

    async def start(self, before_listening: Callable[[], Any] | None = None) -> None:
        settings, auth, reader, consistency = self.settings, self.auth, self.reader, self.consistency
        model_reader = LoggedModelReader(reader.client, settings.database)
        appender = EventAppender(settings.kafka_bootstrap, settings.topic, consistency,
                                 ack_timeout_s=settings.gateway_ack_timeout_s,
                                 client_config=settings.kafka_security.librdkafka_config(),
                                 on_ack=self._own_append_acknowledged)
        mlflow = MlflowService(appender, reader, self.run_read, consistency, write_state=self.write_state)
        replay = BackgroundReplay(settings, lambda: connect(settings.clickhouse_dsn, "replay"))
        http_app = create_app(reader, self.run_read, self.stats, replay)
        artifacts = ArtifactProxy(mlflow, open_artifact_store(settings.artifact_store, settings.artifact_root),
                                  settings.artifact_root / STAGING_DIR)
        models = LoggedModelService(mlflow, model_reader, settings.database, artifacts.read_bytes)
        artifacts.models = models
        http_app.add_routes(mlflow_routes(mlflow, reader, artifacts, _run_search(settings, reader, mlflow), models))
        http_app.add_routes(model_state_routes(model_reader, self.run_read))
        http_app.add_routes(openapi_routes())
        http_app.add_routes(ui_routes())
        if auth is not None:
            sessions = SessionStore()
            password_checks = PasswordChecks.of(auth, settings)
            http_app.add_routes(session_routes(auth, sessions, password_checks))
            http_app.on_response_prepare.append(quiet_ui_challenges)
            http_app.middlewares.append(auth_middleware(auth, mlflow, models, cookie_user(sessions),
                                                        password_checks))
        http_app.middlewares.append(written_marks_middleware(consistency, settings.topic, settings.partitions,
                                                             READ_YOUR_WRITES_TIMEOUT_S))
        http_app.middlewares.append(request_identity_middleware())
        install_web_security(http_app, WebPolicy.of(settings.server_host, settings.allowed_hosts,
                                                    settings.cors_origins), is_ui_page)
        runner = web.AppRunner(http_app, access_log=None)
        await runner.setup()
        # Before the port answers: a client's first call may well create a run in experiment 0.
        await mlflow.ensure_default_experiment()
        if before_listening is not None:
            before_listening()
        await web.TCPSite(runner, settings.server_host, settings.server_port).start()
        print(startup_line(settings, auth), flush=True)


def _run_search(settings: Settings, reader: MlflowReader, mlflow: MlflowService) -> Any:
    async def search(body: dict[str, Any]) -> dict[str, Any]:
        return await mlflow.search_runs(body, settings.database)

    return search
