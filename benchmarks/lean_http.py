"""A lean HTTP client for the benchmarks: one keep-alive ``http.client`` connection, bodies encoded by the caller."""

from __future__ import annotations

import http.client
import json
import urllib.parse
from typing import Any


class HttpError(RuntimeError):
    def __init__(self, status: int, method: str, path: str, body: bytes) -> None:
        super().__init__(f"{method} {path} -> HTTP {status}: {body[:400].decode('utf-8', 'replace')}")
        self.status = status


class Http:
    """A keep-alive ``http.client`` connection. A request that fails on a reused connection
    (the server closed it while idle) is retried once on a fresh one."""

    def __init__(self, base_url: str, timeout: float = 900.0) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 80
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None
        self.last_headers: http.client.HTTPMessage | None = None  # of the last response

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def raw(self, method: str, path: str, body: bytes | None = None,
            params: dict[str, Any] | None = None) -> tuple[int, bytes]:
        if params:
            path = f"{path}?{urllib.parse.urlencode(params, doseq=True)}"
        headers = {"Content-Type": "application/json"} if body is not None else {}
        for attempt in (0, 1):
            reused = self.conn is not None
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                    http.client.CannotSendRequest, http.client.BadStatusLine):
                self.close()
                if reused and attempt == 0:
                    continue
                raise
            if response.will_close:
                self.close()
            self.last_headers = response.headers
            return response.status, data
        raise AssertionError("unreachable")

    def call(self, method: str, path: str, body: bytes | None = None,
             params: dict[str, Any] | None = None) -> bytes:
        status, data = self.raw(method, path, body, params)
        if status != 200:
            raise HttpError(status, method, path, data)
        return data

    def post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        return json.loads(self.call("POST", path, json.dumps(payload).encode()) or b"{}")

    def get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return json.loads(self.call("GET", path, None, params) or b"{}")
