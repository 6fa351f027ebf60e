"""`trackstream server`: one process that owns the embedded ClickHouse, runs the faust worker
and serves the HTTP read API on the same event loop."""

from __future__ import annotations

import json
import os
from pathlib import Path

from aiohttp import web

from consumers.replay import BackgroundReplay
from consumers.store import connect
from consumers.worker import MaterializerService, build_app
from infra.topics import ensure_topics
from server.http import create_app
from server.reader import TrackingReader
from trackstream.config import Settings


def server_state_file(settings: Settings) -> Path:
    return settings.home / "server.json"


def serve(settings: Settings, loglevel: str = "warning") -> None:
    import faust

    settings.home.mkdir(parents=True, exist_ok=True)
    ensure_topics(settings)
    service = MaterializerService(settings)
    reader = TrackingReader(service.executor.submit(connect, settings.clickhouse_dsn, "read").result(),
                            settings.database)
    state_file = server_state_file(settings)

    async def start_http() -> None:
        replay = BackgroundReplay(settings, lambda: connect(settings.clickhouse_dsn, "replay"))
        http_app = create_app(reader, service.on_clickhouse, service.stats, replay)
        runner = web.AppRunner(http_app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, settings.server_host, settings.server_port).start()
        state_file.write_text(json.dumps({"pid": os.getpid(), "url": settings.server_url,
                                          "clickhouse": settings.clickhouse_dsn, "database": settings.database}))
        print(f"trackstream server: HTTP on {settings.server_url}, Kafka {settings.kafka_bootstrap}, "
              f"ClickHouse {settings.clickhouse_dsn} (database {settings.database})", flush=True)

    app = build_app(settings, service, start_http)
    try:
        faust.Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()
    finally:
        if state_file.exists() and json.loads(state_file.read_text()).get("pid") == os.getpid():
            state_file.unlink()
