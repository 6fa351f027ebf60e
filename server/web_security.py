"""What a browser makes real: DNS rebinding (the Host header), cross-site writes (the Origin header),
CORS, and headers that keep user content from running script.

Every decision is a pure function here (unit-tested without a server); :func:`web_security_middleware`
is the aiohttp glue and sits outermost, so a foreign Host or Origin is refused before anything else
(authentication included) looks at the request.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Awaitable, Callable, Iterable, Mapping

from aiohttp import web

from trackstream.server.errors import error_response
from trackstream.errors import PermissionDenied

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# The UI's own pages: scripts, styles and data only from this server; uPlot sets element.style
# from script (CSSOM), which style-src does not govern, so no 'unsafe-inline' is needed.
UI_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
          "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; "
          "object-src 'none'")
# Everything else (JSON, user artifacts): opened as a document it is sandboxed, so an uploaded
# HTML or SVG file cannot run script in the server's origin.
CONTENT_CSP = "default-src 'none'; sandbox"
CORS_ALLOW_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
CORS_ALLOW_HEADERS = "Authorization, Content-Type"


@dataclass(frozen=True)
class WebPolicy:
    """Host names accepted besides loopback ones, and foreign origins allowed cross-origin requests."""

    allowed_hosts: frozenset[str] = frozenset()
    cors_origins: frozenset[str] = frozenset()

    @classmethod
    def of(cls, server_host: str, allowed_hosts: Iterable[str] = (), cors_origins: Iterable[str] = ()) -> "WebPolicy":
        """The bind address itself is allowed too: it is what the server prints as its URL."""
        hosts = {host_name(h) for h in allowed_hosts} | {host_name(server_host)}
        return cls(frozenset(hosts), frozenset(o.rstrip("/").lower() for o in cors_origins))


def host_name(host: str) -> str:
    """The name part of a Host header value, lower-cased: ``[::1]:5055`` -> ``::1``, ``a.b:80`` -> ``a.b``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


def is_loopback_name(name: str) -> bool:
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_allowed(host_header: str | None, policy: WebPolicy) -> bool:
    """DNS rebinding: a page of evil.example re-pointed at 127.0.0.1 still sends ``Host: evil.example``."""
    if not host_header:
        return False
    name = host_name(host_header)
    return is_loopback_name(name) or name in policy.allowed_hosts


def own_origin(scheme: str, host_header: str) -> str:
    return f"{scheme}://{host_header}".lower()


def write_allowed(method: str, origin: str | None, own: str, policy: WebPolicy) -> bool:
    """State-changing requests from a browser carry ``Origin``; only our own (or an allow-listed one)
    may write. Clients that are not browsers (the SDK, the mlflow client) send no Origin."""
    if method in SAFE_METHODS or origin is None:
        return True
    return origin.lower() == own or origin.rstrip("/").lower() in policy.cors_origins


def cors_headers(origin: str | None, policy: WebPolicy) -> dict[str, str]:
    """CORS is closed unless ``origin`` is allow-listed; then it may read and send credentials."""
    if origin is None or origin.rstrip("/").lower() not in policy.cors_origins:
        return {}
    return {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true",
            "Access-Control-Allow-Methods": CORS_ALLOW_METHODS, "Access-Control-Allow-Headers": CORS_ALLOW_HEADERS,
            "Vary": "Origin"}


def security_headers(is_ui_page: bool, existing: Mapping[str, str]) -> dict[str, str]:
    """Headers every response gets; a handler's own Content-Security-Policy is kept."""
    headers = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
               "Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Resource-Policy": "same-origin"}
    if "Content-Security-Policy" not in existing:
        headers["Content-Security-Policy"] = UI_CSP if is_ui_page else CONTENT_CSP
    return headers


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def install_web_security(app: web.Application, policy: WebPolicy, is_ui_page: Callable[[str], bool]) -> None:
    """Refuse foreign Hosts and cross-site writes before any other middleware (auth included) runs,
    and add the headers to every response, streamed artifact downloads included."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        host = request.headers.get("Host")
        if not host_allowed(host, policy):
            return error_response(PermissionDenied(
                f"Host {host!r} is not allowed: add its name to TRACKSTREAM_ALLOWED_HOSTS to serve it"))
        origin = request.headers.get("Origin")
        if not write_allowed(request.method, origin, own_origin(request.scheme, host or ""), policy):
            return error_response(PermissionDenied(
                f"cross-origin {request.method} from {origin!r} refused: only this server's own pages may "
                "write (add the origin to TRACKSTREAM_CORS_ORIGINS to allow it)"))
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            if not cors_headers(origin, policy):
                return error_response(PermissionDenied(f"cross-origin requests from {origin!r} are not allowed"))
            return web.Response(status=204)
        return await handler(request)

    async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
        response.headers.update(security_headers(is_ui_page(request.path), response.headers))
        response.headers.update(cors_headers(request.headers.get("Origin"), policy))

    app.middlewares.insert(0, middleware)
    app.on_response_prepare.append(add_headers)
