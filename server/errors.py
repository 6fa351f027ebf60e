"""Domain errors to HTTP: MLflow's ``{"error_code", "message"}`` body and status codes, for every route."""

from __future__ import annotations

import json
import math
from typing import Awaitable, Callable

from aiohttp import web

from trackstream.errors import (
    InvalidInput,
    NotFound,
    PermissionDenied,
    ResourceAlreadyExists,
    ServiceUnavailable,
    TooManyRequests,
    TrackstreamError,
    Unauthenticated,
)

ERROR_STATUS = [
    (NotFound, "RESOURCE_DOES_NOT_EXIST", 404),
    (ResourceAlreadyExists, "RESOURCE_ALREADY_EXISTS", 400),
    (InvalidInput, "INVALID_PARAMETER_VALUE", 400),
    (Unauthenticated, "UNAUTHENTICATED", 401),
    (PermissionDenied, "PERMISSION_DENIED", 403),
    (TooManyRequests, "REQUEST_LIMIT_EXCEEDED", 429),
    (ServiceUnavailable, "TEMPORARILY_UNAVAILABLE", 503),
    (TrackstreamError, "INTERNAL_ERROR", 500),
]


def error_response(exc: TrackstreamError) -> web.Response:
    for exc_type, code, status in ERROR_STATUS:
        if isinstance(exc, exc_type):
            retry_after = getattr(exc, "retry_after_s", None)
            headers = {} if retry_after is None else {"Retry-After": str(max(1, math.ceil(retry_after)))}
            return web.Response(text=json.dumps({"error_code": code, "message": str(exc)}), status=status,
                                content_type="application/json", headers=headers)
    raise exc


@web.middleware
async def error_middleware(request: web.Request,
                           handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    try:
        return await handler(request)
    except TrackstreamError as exc:
        return error_response(exc)
