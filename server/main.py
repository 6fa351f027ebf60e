"""`trackstream server`: one process that owns the embedded ClickHouse, runs the faust worker,
and serves the MLflow-compatible REST API and trackstream's own read API on the same event loop."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiohttp import web

from trackstream.consumers.replay import BackgroundReplay
from trackstream.consumers.store import connect
from trackstream.consumers.batching import FlushRequests
from trackstream.consumers.worker import MaterializerService, build_app
from trackstream.infra.topics import ensure_topics
from trackstream.server.auth import AuthConfig, auth_middleware, load_auth
from trackstream.server.password_checks import PasswordChecks
from trackstream.server.event_log import EventAppender, ReadYourWrites
from trackstream.server.http import create_app, model_state_routes, written_marks_middleware
from trackstream.server.mlflow_api import ArtifactProxy, mlflow_routes
from trackstream.server.logged_models import LoggedModelService
from trackstream.server.mlflow_service import READ_YOUR_WRITES_TIMEOUT_S, MlflowService
from trackstream.server.model_reader import LoggedModelReader
from trackstream.server.openapi import openapi_routes
from trackstream.server.reader import MlflowReader
from trackstream.server.run_cache import RunDataCache
from trackstream.server.ui import is_ui_page, ui_routes
from trackstream.server.web_session import SessionStore, cookie_user, quiet_ui_challenges, session_routes
from trackstream.server.web_security import WebPolicy, install_web_security
from trackstream.config import Settings, redact_secrets

READ_THREADS = 2


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
    import asyncio

    import faust

    auth = load_auth(settings.auth_file, settings.server_host)
    settings.home.mkdir(parents=True, exist_ok=True)
    ensure_topics(settings)
    service = MaterializerService(settings)
    service.flush_requests = FlushRequests()
    consistency = ReadYourWrites(service.flush_requests)
    run_cache = RunDataCache()

    def on_materialized(positions: dict[int, int], touched_runs: set[str]) -> None:
        run_cache.invalidate(touched_runs)  # before the marks move: see server.run_cache
        consistency.record_materialized(positions)

    service.on_materialized = on_materialized
    # What earlier runs of the worker stored: an SDK's marks may name events materialized before
    # this process started, and no batch will ever report them again.
    consistency.record_materialized(service.stored_positions())
    read_executor = ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="clickhouse-read")
    reader = MlflowReader(read_executor.submit(connect, settings.clickhouse_dsn, "read").result(), settings.database,
                          run_cache)
    model_reader = LoggedModelReader(reader.client, settings.database)
    state_file = server_state_file(settings)

    async def run_read(fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(read_executor, fn, *args)

    async def start_http() -> None:
        appender = EventAppender(settings.kafka_bootstrap, settings.topic, consistency)
        mlflow = MlflowService(appender, reader, run_read, consistency)
        replay = BackgroundReplay(settings, lambda: connect(settings.clickhouse_dsn, "replay"))
        http_app = create_app(reader, run_read, service.stats, replay)
        artifacts = ArtifactProxy(mlflow, settings.artifact_root)
        models = LoggedModelService(mlflow, model_reader, settings.database, artifacts.read_bytes)
        artifacts.models = models
        http_app.add_routes(mlflow_routes(mlflow, reader, artifacts, _run_search(settings, reader, mlflow), models))
        http_app.add_routes(model_state_routes(model_reader, run_read))
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
        install_web_security(http_app, WebPolicy.of(settings.server_host, settings.allowed_hosts,
                                                    settings.cors_origins), is_ui_page)
        runner = web.AppRunner(http_app, access_log=None)
        await runner.setup()
        # Recorded before the port answers: whoever sees /health answer also finds this file, and
        # so reads through HTTP instead of opening the embedded engine this process owns.
        state_file.write_text(json.dumps(server_state(settings, os.getpid())))
        await web.TCPSite(runner, settings.server_host, settings.server_port).start()
        await mlflow.ensure_default_experiment()
        print(startup_line(settings, auth), flush=True)

    app = build_app(settings, service, start_http)
    try:
        faust.Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()
    finally:
        if state_file.exists() and json.loads(state_file.read_text()).get("pid") == os.getpid():
            state_file.unlink()


def _run_search(settings: Settings, reader: MlflowReader, mlflow: MlflowService) -> Any:
    async def search(body: dict[str, Any]) -> dict[str, Any]:
        return await mlflow.search_runs(body, settings.database)

    return search
