"""The OpenAPI 3 description of the MLflow endpoints trackstream serves (``server/openapi.json``),
served at ``GET /api/2.0/mlflow/openapi.json``."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from aiohttp import web

OPENAPI_FILE = Path(__file__).with_name("openapi.json")
OPENAPI_ROUTE = "/api/2.0/mlflow/openapi.json"


@functools.lru_cache(maxsize=1)
def openapi_text() -> str:
    return OPENAPI_FILE.read_text(encoding="utf-8")


def openapi_document() -> dict[str, Any]:
    return json.loads(openapi_text())


def openapi_routes() -> list[web.RouteDef]:
    async def serve_openapi(request: web.Request) -> web.Response:
        return web.Response(text=openapi_text(), content_type="application/json")

    return [web.get(OPENAPI_ROUTE, serve_openapi)]
