"""server.ui: the shipped assets, their serving (gzip, ETag, only known names) and what counts as a UI page."""

from __future__ import annotations

import asyncio
import gzip
import re

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDict

from trackstream.server.ui import ASSETS, INDEX, is_ui_page, load_assets, ui_routes


def test_every_module_the_page_imports_ships_with_the_package():
    assets = load_assets()
    assert INDEX in assets
    sources = {name: a.body.decode() for name, a in assets.items() if name.endswith((".js", ".html"))}
    for name, text in sources.items():
        folder = name.rsplit("/", 1)[0] if "/" in name else ""
        for ref in re.findall(r"""(?:from\s+|import\s+|src=|href=)['"]([^'"#]+\.(?:js|css))['"]""", text):
            target = ref.removeprefix("/ui/") if ref.startswith("/ui/") else _join(folder, ref)
            assert target in assets, f"{name} refers to {ref}, which is not shipped"


def _join(folder: str, ref: str) -> str:
    parts = (folder.split("/") if folder else []) + ref.split("/")
    out: list[str] = []
    for part in parts:
        if part == "..":
            out.pop()
        elif part not in (".", ""):
            out.append(part)
    return "/".join(out)


def test_no_asset_loads_anything_from_another_host():
    for name, asset in load_assets().items():
        if name.endswith((".js", ".html", ".css")) and not name.startswith("vendor/"):
            assert not re.search(rb"https?://", asset.body), f"{name} names an outside URL"


def test_the_ui_never_builds_markup_from_strings():
    for path in ASSETS.rglob("*.js"):
        if "vendor" not in path.parts:
            assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(", path.read_text()), path


def test_is_ui_page():
    assert is_ui_page("/") and is_ui_page("/ui/app.js")
    assert not is_ui_page("/api/2.0/mlflow/runs/get") and not is_ui_page("/uix")


def fetch(path: str, headers: dict[str, str]) -> tuple[int, CIMultiDict[str], bytes]:
    async def go() -> tuple[int, CIMultiDict[str], bytes]:
        app = web.Application()
        app.add_routes(ui_routes())
        async with TestClient(TestServer(app)) as client:
            response = await client.get(path, headers=headers, auto_decompress=False)
            return response.status, CIMultiDict(response.headers), await response.read()

    return asyncio.run(go())


def test_assets_are_served_gzipped_with_an_etag_and_unknown_names_are_404():
    status, headers, body = fetch("/ui/app.js", {"Accept-Encoding": "gzip"})
    assert status == 200 and headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(body) == (ASSETS / "app.js").read_bytes()
    assert fetch("/ui/app.js", {"If-None-Match": headers["ETag"]})[0] == 304
    assert fetch("/ui/../ui.py", {})[0] == 404
    assert fetch("/ui/nope.js", {})[0] == 404
    status, headers, body = fetch("/", {"Accept-Encoding": "identity"})
    assert status == 200 and headers["Content-Type"].startswith("text/html") and b"/ui/app.js" in body
