"""The web UI's static files: ``/`` is the single page, ``/ui/<file>`` its modules, styles and the
vendored uPlot. The files ship inside the package (``server/ui_assets``, package-data), are read
once, and are served gzip-compressed to browsers that accept it. The UI reads data only through
the REST routes every client uses (MLflow's and ``/api/ts``)."""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

ASSETS = Path(__file__).resolve().parent / "ui_assets"
UI_PREFIX = "/ui/"
INDEX = "index.html"
_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".svg": "image/svg+xml",
          ".png": "image/png", ".json": "application/json"}


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes
    content_type: str
    etag: str


def load_assets(root: Path = ASSETS) -> dict[str, Asset]:
    """Every file under ``root`` by its relative path; only these names are ever served."""
    assets = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        body = path.read_bytes()
        content_type = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        assets[path.relative_to(root).as_posix()] = Asset(body, gzip.compress(body, 9, mtime=0), content_type,
                                                           '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
    return assets


def is_ui_page(path: str) -> bool:
    """Paths that are the UI itself (strict CSP), as opposed to data or user content."""
    return path == "/" or path.startswith(UI_PREFIX)


def _respond(request: web.Request, asset: Asset) -> web.Response:
    headers = {"ETag": asset.etag, "Cache-Control": "no-cache"}
    if request.headers.get("If-None-Match") == asset.etag:
        return web.Response(status=304, headers=headers)
    body = asset.body
    if "gzip" in request.headers.get("Accept-Encoding", "") and len(asset.gzipped) < len(asset.body):
        body, headers["Content-Encoding"] = asset.gzipped, "gzip"
        headers["Vary"] = "Accept-Encoding"
    charset = "utf-8" if asset.content_type.startswith("text/") else None
    return web.Response(body=body, content_type=asset.content_type, charset=charset, headers=headers)


def ui_routes(assets: dict[str, Asset] | None = None) -> list[web.RouteDef]:
    files = load_assets() if assets is None else assets

    async def index(request: web.Request) -> web.Response:
        return _respond(request, files[INDEX])

    async def asset(request: web.Request) -> web.Response:
        found = files.get(request.match_info["path"])
        if found is None:
            raise web.HTTPNotFound(text="no such UI file")
        return _respond(request, found)

    return [web.get("/", index), web.get(UI_PREFIX + "{path:.+}", asset)]
