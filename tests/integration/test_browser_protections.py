"""Browser-facing protections of a running gateway, driven with plain HTTP (no browser): a foreign
``Host`` (DNS rebinding) is refused, a write whose ``Origin`` is foreign (a cross-site page) is
refused and writes nothing, CORS stays closed unless ``TRACKSTREAM_CORS_ORIGINS`` opens it, and
``TRACKSTREAM_ALLOWED_HOSTS`` adds names to the loopback ones."""

from __future__ import annotations

import uuid
from typing import Any, Iterator

import pytest
import requests

from tests.integration.harness import ServerHandle, make_server, running_server

API = "/api/2.0/mlflow"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
EVIL_HOST = "evil.example.com"
EVIL_ORIGIN = "http://evil.example.com"
NOTEBOOK = "https://notebook.example"
CORS_HEADERS = ("Access-Control-Allow-Origin", "Access-Control-Allow-Credentials", "Access-Control-Allow-Methods")


@pytest.fixture(scope="module")
def default_server(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    with running_server(kafka_bootstrap, tmp_path_factory.mktemp("browser"), "brw") as server:
        yield server


@pytest.fixture(scope="module")
def opened_server(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    """Allow-lists: one more host name, one cross-origin client."""
    server = make_server(kafka_bootstrap, tmp_path_factory.mktemp("browser-open"), f"bro{uuid.uuid4().hex[:6]}")
    server.env_overrides = {"TRACKSTREAM_ALLOWED_HOSTS": "tracker.example", "TRACKSTREAM_CORS_ORIGINS": NOTEBOOK}
    server.start()
    yield server
    server.stop()


def call(server: ServerHandle, method: str, path: str, headers: dict[str, str] | None = None,
         **kwargs: Any) -> requests.Response:
    return requests.request(method, server.settings.server_url + path, headers=headers or {}, timeout=60, **kwargs)


def experiment_named(server: ServerHandle, name: str) -> int:
    """Status of get-by-name, read the way a non-browser client does (no Origin)."""
    return call(server, "GET", API + "/experiments/get-by-name", params={"experiment_name": name}).status_code


def port_of(server: ServerHandle) -> int:
    return server.settings.server_port


def test_a_foreign_host_is_refused_before_anything_is_served_or_written(default_server: ServerHandle) -> None:
    server = default_server
    for host in (EVIL_HOST, f"{EVIL_HOST}:{port_of(server)}", "127.0.0.1.evil.example.com", "localhost.evil.example"):
        for method, path in (("GET", API + "/experiments/search"), ("GET", "/"), ("GET", "/api/ts/status")):
            response = call(server, method, path, {"Host": host})
            assert response.status_code == 403, (host, path, response.status_code)
            assert host.split(":")[0] in response.json()["message"] and \
                "TRACKSTREAM_ALLOWED_HOSTS" in response.json()["message"]
        name = f"rebound-{uuid.uuid4().hex[:6]}"
        assert call(server, "POST", API + "/experiments/create", {"Host": host}, json={"name": name}).status_code == 403
        assert experiment_named(server, name) == 404
    for host in ("localhost", f"127.0.0.1:{port_of(server)}", f"[::1]:{port_of(server)}", "LOCALHOST"):
        assert call(server, "GET", API + "/experiments/search", {"Host": host}).status_code == 200, host


def test_a_cross_origin_write_is_refused_and_writes_nothing(default_server: ServerHandle) -> None:
    server = default_server
    for origin in (EVIL_ORIGIN, "null", f"http://localhost.evil.example.com:{port_of(server)}"):
        name = f"csrf-{uuid.uuid4().hex[:6]}"
        refused = call(server, "POST", API + "/experiments/create", {"Origin": origin}, json={"name": name})
        assert refused.status_code == 403 and "cross-origin POST" in refused.json()["message"], origin
        assert experiment_named(server, name) == 404
    experiment_id = call(server, "POST", API + "/experiments/create", json={"name": f"own-{uuid.uuid4().hex[:6]}"}).json()[
        "experiment_id"]
    run_id = call(server, "POST", API + "/runs/create", json={"experiment_id": experiment_id}).json()["run"]["info"][
        "run_id"]
    key = f"{experiment_id}/{run_id}/artifacts/planted.txt"
    assert call(server, "PUT", f"{ARTIFACTS}/{key}", {"Origin": EVIL_ORIGIN}, data=b"x").status_code == 403
    assert not (server.settings.artifact_root / key).exists()
    assert call(server, "POST", API + "/runs/set-tag", {"Origin": EVIL_ORIGIN},
                json={"run_id": run_id, "key": "planted", "value": "x"}).status_code == 403
    tags = call(server, "GET", API + "/runs/get", params={"run_id": run_id}).json()["run"]["data"].get("tags", [])
    assert "planted" not in {t["key"] for t in tags}
    own = f"http://127.0.0.1:{port_of(server)}"
    name = f"same-origin-{uuid.uuid4().hex[:6]}"
    assert call(server, "POST", API + "/experiments/create", {"Origin": own}, json={"name": name}).status_code == 200
    assert experiment_named(server, name) == 200


def test_cors_is_closed_by_default(default_server: ServerHandle) -> None:
    server = default_server
    for origin in (EVIL_ORIGIN, NOTEBOOK):
        preflight = call(server, "OPTIONS", API + "/experiments/create",
                         {"Origin": origin, "Access-Control-Request-Method": "POST",
                          "Access-Control-Request-Headers": "content-type"})
        assert preflight.status_code == 403 and not set(CORS_HEADERS) & set(preflight.headers), origin
        read = call(server, "GET", API + "/experiments/search", {"Origin": origin})
        assert read.status_code == 200 and not set(CORS_HEADERS) & set(read.headers), origin


def test_the_allow_lists_open_named_hosts_and_origins_only(opened_server: ServerHandle) -> None:
    server = opened_server
    for host in ("tracker.example", f"tracker.example:{port_of(server)}", "TRACKER.EXAMPLE", "localhost"):
        assert call(server, "GET", API + "/experiments/search", {"Host": host}).status_code == 200, host
    for host in (EVIL_HOST, "tracker.example.evil.com", "sub.tracker.example"):
        assert call(server, "GET", API + "/experiments/search", {"Host": host}).status_code == 403, host

    preflight = call(server, "OPTIONS", API + "/experiments/create",
                     {"Origin": NOTEBOOK, "Access-Control-Request-Method": "POST",
                      "Access-Control-Request-Headers": "content-type"})
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == NOTEBOOK
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert "content-type" in preflight.headers["Access-Control-Allow-Headers"].lower()
    name = f"notebook-{uuid.uuid4().hex[:6]}"
    created = call(server, "POST", API + "/experiments/create", {"Origin": NOTEBOOK}, json={"name": name})
    assert created.status_code == 200 and created.headers["Access-Control-Allow-Origin"] == NOTEBOOK
    assert experiment_named(server, name) == 200

    for origin in (EVIL_ORIGIN, "https://notebook.example.evil.com", "http://notebook.example"):
        preflight = call(server, "OPTIONS", API + "/experiments/create",
                         {"Origin": origin, "Access-Control-Request-Method": "POST"})
        assert preflight.status_code == 403 and "Access-Control-Allow-Origin" not in preflight.headers, origin
        name = f"foreign-{uuid.uuid4().hex[:6]}"
        assert call(server, "POST", API + "/experiments/create", {"Origin": origin},
                    json={"name": name}).status_code == 403, origin
        assert experiment_named(server, name) == 404
