"""Which request a write is: the identity that makes a client's retry a no-op end to end.

A request's identity is a digest of its method, route (``/api`` and ``/ajax-api`` alike), query
and body — or, when the client sends an ``Idempotency-Key`` header, of its method, route and that
key. Every event the request appends is stamped from it (``schemas.envelope.RequestStamp``), so a
retry of a request whose write landed although the client saw an error appends the same events
again, which the materializer drops (``consumers/materializer.py``, ``is_request_retry``).
"""

from __future__ import annotations

import hashlib
from typing import Awaitable, Callable

from aiohttp import web

from trackstream.schemas.envelope import RequestStamp
from trackstream.server.event_log import CURRENT_REQUEST
from trackstream.server.http import read_body

IDEMPOTENCY_HEADER = "Idempotency-Key"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
AJAX_PREFIX, API_PREFIX = "/ajax-api/", "/api/"


def request_identity(method: str, path: str, query: str, body: bytes, idempotency_key: str | None) -> str | None:
    """Hex digest naming a write request; None for reads (they append nothing)."""
    method = method.upper()
    if method not in WRITE_METHODS:
        return None
    if path.startswith(AJAX_PREFIX):
        path = API_PREFIX + path[len(AJAX_PREFIX):]
    digest = hashlib.sha256(f"{method}\0{path}\0".encode())
    if idempotency_key is not None:
        digest.update(b"key\0" + idempotency_key.encode())
    else:
        digest.update(f"body\0{query}\0".encode() + body)
    return digest.hexdigest()


def request_identity_middleware() -> Callable[..., Awaitable[web.StreamResponse]]:
    """Stamps the events of every write request under the MLflow API (``/api/2.0/mlflow``,
    ``/ajax-api/2.0/mlflow``) from that request's identity."""

    @web.middleware
    async def middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                         ) -> web.StreamResponse:
        if request.method not in WRITE_METHODS or "/2.0/mlflow/" not in request.path:
            return await handler(request)
        body = await read_body(request)  # aiohttp keeps it: the handler reads it again
        identity = request_identity(request.method, request.path, request.query_string, body,
                                    request.headers.get(IDEMPOTENCY_HEADER))
        token = CURRENT_REQUEST.set(RequestStamp(identity) if identity else None)
        try:
            return await handler(request)
        finally:
            CURRENT_REQUEST.reset(token)

    return middleware
