"""server.web_security: the Host (DNS rebinding), Origin (CSRF) and CORS decisions, and the headers,
on pure functions and on an in-process aiohttp app (no Kafka, no ClickHouse)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDict

from trackstream.server.errors import error_middleware
from trackstream.server.ui import is_ui_page
from trackstream.server.web_security import (
    CONTENT_CSP,
    UI_CSP,
    WebPolicy,
    cors_headers,
    host_allowed,
    host_name,
    install_web_security,
    write_allowed,
)

DEFAULT = WebPolicy.of("127.0.0.1")


@pytest.mark.parametrize("header, name", [("127.0.0.1:5055", "127.0.0.1"), ("[::1]:5055", "::1"), ("LocalHost", "localhost"),
                                          ("a.example:80", "a.example"), ("::1", "::1")])
def test_host_name_drops_the_port_and_brackets(header, name):
    assert host_name(header) == name


@pytest.mark.parametrize("header", ["127.0.0.1:5055", "localhost:5055", "[::1]:5055", "127.3.4.5", "app.localhost:1"])
def test_loopback_hosts_are_allowed_by_default(header):
    assert host_allowed(header, DEFAULT)


@pytest.mark.parametrize("header", ["evil.example", "evil.example:5055", "10.0.0.5:5055", "", None, "127.0.0.1.evil.example"])
def test_other_hosts_are_refused_by_default(header):
    assert not host_allowed(header, DEFAULT)


def test_configured_hosts_and_the_bind_address_are_allowed():
    policy = WebPolicy.of("10.0.0.5", allowed_hosts=["Tracker.Example"])
    assert host_allowed("tracker.example:5055", policy) and host_allowed("10.0.0.5:5055", policy)
    assert not host_allowed("other.example", policy)


def test_writes_need_no_origin_or_our_own_or_an_allow_listed_one():
    own = "http://127.0.0.1:5055"
    policy = WebPolicy.of("127.0.0.1", cors_origins=["https://notebook.example/"])
    assert write_allowed("POST", None, own, policy)  # SDK, mlflow client: not a browser
    assert write_allowed("POST", "http://127.0.0.1:5055", own, policy)
    assert write_allowed("DELETE", "https://notebook.example", own, policy)
    assert not write_allowed("POST", "http://evil.example", own, policy)
    assert not write_allowed("POST", "null", own, policy)  # sandboxed iframes, file: pages
    assert not write_allowed("PUT", "http://127.0.0.1:5056", own, policy)  # another port is another origin
    assert write_allowed("GET", "http://evil.example", own, policy)  # reads: the browser withholds the answer


def test_cors_is_closed_unless_allow_listed():
    assert cors_headers("http://evil.example", DEFAULT) == {}
    opened = cors_headers("https://notebook.example", WebPolicy.of("127.0.0.1", cors_origins=["https://notebook.example"]))
    assert opened["Access-Control-Allow-Origin"] == "https://notebook.example" and opened["Vary"] == "Origin"


def serve(policy: WebPolicy, method: str, path: str, headers: dict[str, str]) -> tuple[int, CIMultiDict[str], Any]:
    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/svg+xml"})
        await response.prepare(request)
        await response.write(b"<svg/>")
        return response

    async def go() -> tuple[int, CIMultiDict[str], Any]:
        app = web.Application(middlewares=[error_middleware])
        app.add_routes([web.get("/", answer), web.post("/api/write", answer), web.get("/file", stream)])
        install_web_security(app, policy, is_ui_page)
        async with TestClient(TestServer(app)) as client:
            response = await client.request(method, path, headers=headers)
            body = await response.json() if response.content_type == "application/json" else await response.read()
            return response.status, CIMultiDict(response.headers), body

    return asyncio.run(go())


def test_the_middleware_refuses_a_foreign_host_before_the_handler():
    status, _, body = serve(DEFAULT, "GET", "/", {"Host": "evil.example"})
    assert status == 403 and "TRACKSTREAM_ALLOWED_HOSTS" in body["message"]


def test_the_middleware_refuses_a_cross_site_write_and_its_preflight():
    status, _, body = serve(DEFAULT, "POST", "/api/write", {"Origin": "http://evil.example"})
    assert status == 403 and body["error_code"] == "PERMISSION_DENIED"
    status, headers, _ = serve(DEFAULT, "OPTIONS", "/api/write", {"Origin": "http://evil.example",
                                                                  "Access-Control-Request-Method": "POST"})
    assert status == 403 and "Access-Control-Allow-Origin" not in headers


def test_ui_pages_get_the_strict_csp_and_everything_else_a_sandbox_streamed_responses_too():
    _, page, _ = serve(DEFAULT, "GET", "/", {})
    assert page["Content-Security-Policy"] == UI_CSP and page["X-Frame-Options"] == "DENY"
    status, streamed, body = serve(DEFAULT, "GET", "/file", {})
    assert status == 200 and body == b"<svg/>"
    assert streamed["Content-Security-Policy"] == CONTENT_CSP and streamed["X-Content-Type-Options"] == "nosniff"
