"""How the CLI and the SDK read: through a running server when there is one (it owns the embedded
ClickHouse), otherwise (CLI only) straight from ClickHouse with the same TrackingReader the server uses."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from trackstream.infra.processes import pid_alive, read_cmdline
from trackstream.config import Settings
from trackstream.errors import InvalidInput, NotFound, ServiceUnavailable, TrackstreamError
from trackstream.read_protocol import NEXT_PAGE_HEADER, HistoryColumns, decode_history_columns

MLFLOW_API = "/api/2.0/mlflow"


class HttpReader:
    """The read API of a running ``trackstream server`` with TrackingReader's method names, plus
    the MLflow routes and the numpy history columns the SDK's reads use.

    ``extra_headers`` is called before every request; the SDK passes its written marks this way
    (``trackstream/read_protocol.py``).
    """

    def __init__(self, base_url: str, timeout: float = 30.0,
                 extra_headers: Callable[[], Mapping[str, str]] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.extra_headers = extra_headers

    def _request(self, path: str, body: dict[str, Any] | None = None) -> bytes:
        return self._exchange(path, body)[0]

    def _exchange(self, path: str, body: dict[str, Any] | None = None) -> tuple[bytes, Mapping[str, str]]:
        """The response body and headers of one request; HTTP errors as trackstream's exceptions."""
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"}
        token = os.environ.get("TRACKSTREAM_TOKEN")
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if self.extra_headers is not None:
            headers.update(self.extra_headers())
        request = urllib.request.Request(self.base_url + path, data=data, method="POST" if data else "GET",
                                         headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.read(), response.headers
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("message", str(exc))
            except ValueError:
                message = str(exc)
            raise {404: NotFound, 400: InvalidInput, 503: ServiceUnavailable}.get(
                exc.code, TrackstreamError)(message) from None
        except (urllib.error.URLError, OSError) as exc:
            raise ServiceUnavailable(f"trackstream server at {self.base_url} does not answer: {exc}") from exc

    def _call(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return json.loads(self._request(path, body))

    def healthy(self) -> bool:
        try:
            return self._call("/health").get("status") == "ok"
        except TrackstreamError:
            return False

    def runs(self, limit: int = 50, experiment_id: str | None = None,
             as_of_ms: int | None = None) -> list[dict[str, Any]]:
        query = {"limit": limit} | ({"experiment_id": experiment_id} if experiment_id else {}) | _as_of(as_of_ms)
        return self._call(f"/api/ts/runs?{urllib.parse.urlencode(query)}")["runs"]

    def run(self, run_id: str, as_of_ms: int | None = None) -> dict[str, Any]:
        query = urllib.parse.urlencode(_as_of(as_of_ms))
        return self._call(f"/api/ts/runs/{urllib.parse.quote(run_id, safe='')}?{query}")["run"]

    def _history_pages(self, run_id: str, key: str, query: dict[str, Any]) -> Iterator[bytes]:
        """Every page of the history route, following its ``X-Trackstream-Next-Page-Token``."""
        path = f"/api/ts/runs/{urllib.parse.quote(run_id, safe='')}/metrics/{urllib.parse.quote(key, safe='')}"
        token = None
        while True:
            body, headers = self._exchange(f"{path}?{urllib.parse.urlencode(query | _page(token))}")
            yield body
            token = headers.get(NEXT_PAGE_HEADER)
            if not token:
                return

    def metric_history(self, run_id: str, key: str, limit: int | None = None,
                       as_of_ms: int | None = None) -> dict[str, list]:
        """The history as lists (every page, or the first ``limit`` points)."""
        history: dict[str, list] = {"step": [], "timestamp_ms": [], "value": []}
        for body in self._history_pages(run_id, key, _as_of(as_of_ms)):
            page = json.loads(body)["history"]
            for name, column in history.items():
                column += page[name]
            if limit is not None and len(history["step"]) >= limit:
                break
        history = {name: column[:limit] for name, column in history.items()}
        history["value"] = [float(v) if isinstance(v, str) else v for v in history["value"]]
        return history

    def history_columns(self, run_id: str, key: str) -> HistoryColumns:
        """The full history of one metric as numpy columns (the ``format=columns`` pages, joined)."""
        pages = [decode_history_columns(body) for body in self._history_pages(run_id, key, {"format": "columns"})]
        if len(pages) == 1:
            return pages[0]
        return HistoryColumns(*(np.concatenate([getattr(p, name) for p in pages])
                                for name in ("steps", "values", "timestamps")))

    def mlflow_run(self, run_id: str) -> dict[str, Any]:
        """MLflow's Run (``runs/get``) as JSON."""
        return self._call(f"{MLFLOW_API}/runs/get?{urllib.parse.urlencode({'run_id': run_id})}")["run"]

    def mlflow_search_runs(self, body: dict[str, Any]) -> dict[str, Any]:
        """One page of MLflow's ``runs/search``: ``{"runs": [...], "next_page_token"?}``."""
        return self._call(f"{MLFLOW_API}/runs/search", body)

    def rejects(self, limit: int = 50) -> list[dict[str, Any]]:
        return self._call(f"/api/ts/rejects?limit={limit}")["rejects"]

    def sql(self, query: str) -> dict[str, Any]:
        return self._call("/api/ts/sql", {"query": query})

    def status(self) -> dict[str, Any]:
        return self._call("/api/ts/status")

    def start_replay(self, database: str | None, until_ms: int | None, replace: bool) -> dict[str, Any]:
        return self._call("/api/ts/replay", {"database": database, "until_ms": until_ms, "replace": replace})

    def replay_status(self) -> dict[str, Any]:
        return self._call("/api/ts/replay")


def _page(token: str | None) -> dict[str, str]:
    return {"page_token": token} if token else {}


def _as_of(as_of_ms: int | None) -> dict[str, int]:
    return {} if as_of_ms is None else {"as_of": as_of_ms}


def running_server_url(settings: Settings) -> str | None:
    """The URL of this home's server while it runs: its recorded process is alive (a busy server
    that is slow to answer still owns the embedded engine), or it answers ``/health``."""
    state = settings.home / "server.json"
    try:
        recorded = json.loads(state.read_text())
        url, pid = recorded["url"], int(recorded["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return url if is_trackstream_server(pid) or HttpReader(url, timeout=3).healthy() else None


def is_trackstream_server(pid: int) -> bool:
    """Whether ``pid`` is alive and runs ``python -m trackstream.cli server`` or the ``trackstream
    server`` console script (a recorded pid the kernel gave to another program is not)."""
    if not pid_alive(pid):
        return False
    args = read_cmdline(pid) or []
    return "server" in args and any(a == "trackstream.cli" or os.path.basename(a) == "trackstream" for a in args)


def open_reader(settings: Settings) -> Any:
    """An HttpReader when a server is up, else a direct TrackingReader."""
    url = running_server_url(settings)
    if url:
        return HttpReader(url)
    from trackstream.consumers.store import SchemaManager, connect
    from trackstream.server.reader import TrackingReader

    client = connect(settings.clickhouse_dsn, "read")
    if SchemaManager(client, settings.database).current_version() == 0:
        raise NotFound(f"no trackstream tables in database {settings.database!r} at {settings.clickhouse_dsn}; "
                       "start the server (`trackstream up`) and log a run first")
    return TrackingReader(client, settings.database)
