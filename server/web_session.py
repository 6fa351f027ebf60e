"""Browser sign-in when auth is on: ``POST /api/ts/session`` with a user name and password (checked
by :class:`AuthConfig` like HTTP basic) sets an HttpOnly, SameSite=Strict session cookie that the
auth middleware accepts in place of an ``Authorization`` header. Sessions live in memory: a
restart signs everyone out."""

from __future__ import annotations

import base64
import secrets
import threading
import time
from typing import Callable

from aiohttp import web

from trackstream.errors import InvalidInput
from trackstream.server import json_codec
from trackstream.server.auth import SESSION_PATH, AuthConfig
from trackstream.server.password_checks import PasswordChecks

SESSION_COOKIE = "ts_session"
SESSION_TTL_S = 12 * 3600
UI_REQUEST_HEADER = "X-Trackstream-UI"  # sent by the UI's fetches: a 401 then shows our form, not the browser's


class SessionStore:
    """Random 256-bit tokens -> (user name, expiry). Thread-safe; expired tokens are dropped on sight."""

    def __init__(self, ttl_s: float = SESSION_TTL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s, self.clock = ttl_s, clock
        self._sessions: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def create(self, user: str) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._sessions[token] = (user, self.clock() + self.ttl_s)
        return token

    def user_of(self, token: str | None) -> str | None:
        if not token:
            return None
        with self._lock:
            found = self._sessions.get(token)
            if found is None:
                return None
            if found[1] <= self.clock():
                del self._sessions[token]
                return None
            return found[0]

    def drop(self, token: str | None) -> None:
        with self._lock:
            self._sessions.pop(token or "", None)


def session_routes(config: AuthConfig, sessions: SessionStore, checks: PasswordChecks) -> list[web.RouteDef]:
    async def sign_in(request: web.Request) -> web.Response:
        body = json_codec.decode_object(await request.read())
        user, password = body.get("username"), body.get("password")
        if not isinstance(user, str) or not isinstance(password, str) or not user:
            raise InvalidInput("body must be a JSON object with string 'username' and 'password'")
        basic = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        found = await checks.authenticate(basic, request.remote)  # Unauthenticated -> 401, limits -> 429 / 503
        response = web.json_response({"user": found.name, "admin": found.admin})
        response.set_cookie(SESSION_COOKIE, sessions.create(found.name), max_age=int(sessions.ttl_s), path="/",
                            httponly=True, samesite="Strict", secure=request.secure)
        return response

    async def who(request: web.Request) -> web.Response:
        return web.json_response({"user": sessions.user_of(request.cookies.get(SESSION_COOKIE))})

    async def sign_out(request: web.Request) -> web.Response:
        sessions.drop(request.cookies.get(SESSION_COOKIE))
        response = web.json_response({})
        response.del_cookie(SESSION_COOKIE, path="/")
        return response

    return [web.post(SESSION_PATH, sign_in), web.get(SESSION_PATH, who), web.delete(SESSION_PATH, sign_out)]


def cookie_user(sessions: SessionStore) -> Callable[[web.Request], str | None]:
    return lambda request: sessions.user_of(request.cookies.get(SESSION_COOKIE))


async def quiet_ui_challenges(request: web.Request, response: web.StreamResponse) -> None:
    """The UI's own requests get no ``WWW-Authenticate``, so the browser does not pop its basic-auth
    dialog over the sign-in form."""
    if request.headers.get(UI_REQUEST_HEADER) and response.status == 401:
        response.headers.popall("WWW-Authenticate", None)
