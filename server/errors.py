"""Domain errors to HTTP: MLflow's ``{"error_code", "message"}`` body and status codes, for every route."""

from __future__ import annotations

import json
from typing import Awaitable, Callable

from aiohttp import web

from trackstream.errors import (
    InvalidInput,
    NotFound,
    PermissionDenied,
    ResourceAlreadyExists,
    ServiceUnavailable,
    TrackstreamError,
    Unauthenticated,
)

ERROR_STATUS = [
    (NotFound, "RESOURCE_DOES_NOT_EXIST", 404),
    (ResourceAlreadyExists, "RESOURCE_ALREADY_EXISTS", 400),
    (InvalidInput, "INVALID_PARAMETER_VALUE", 400),
    (Unauthenticated, "UNAUTHENTICATED", 401),
    (PermissionDenied, "PERMISSION_DENIED", 403),
    (ServiceUnavailable, "TEMPORARILY_UNAVAILABLE", 503),
    (TrackstreamError, "INTERNAL_ERROR", 500),
]


def error_response(exc: TrackstreamError) -> web.Response:
    for exc_type, code, status in ERROR_STATUS:
        if isinstance(exc, exc_type):
            return web.Response(text=json.dumps({"error_code": code, "message": str(exc)}), status=status,
                                content_type="application/json")
    raise exc


@web.middleware
async def error_middleware(request: web.Request,
                           handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    try:
        return await handler(request)
    except TrackstreamError as exc:
        return error_response(exc)
