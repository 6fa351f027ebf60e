"""server.auth: credentials, the per-route requirement table, the permission decision, the bind
check, and the aiohttp glue on an in-process app (no Kafka, no ClickHouse)."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from multidict import MultiDict

from trackstream.server.auth import (
    Access,
    AllExperiments,
    AuthConfig,
    AuthConfigError,
    ExperimentName,
    Experiments,
    Models,
    Runs,
    Scope,
    User,
    VisibleExperiments,
    auth_middleware,
    authorize,
    check_exposure,
    experiments_visible_to,
    hash_secret,
    is_loopback,
    load_auth,
    requirement,
    routing_fields,
)
from trackstream.server.errors import error_middleware
from trackstream.server.passwords import PasswordHash, PasswordHashError, hash_password
from trackstream.errors import InvalidInput, NotFound, PermissionDenied, Unauthenticated

RUN = "0123456789abcdef0123456789abcdef"
ALICE_PASSWORD_HASH = hash_password("alice-pw", n=2**10)  # the cheapest cost the parser takes, for speed


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def config() -> AuthConfig:
    return AuthConfig.from_dict({"users": {
        "alice": {"password_hash": ALICE_PASSWORD_HASH, "tokens_sha256": [hash_secret("alice-token")],
                  "experiments": {"*": "read", "12345": "write"}},
        "bob": {"tokens_sha256": [hash_secret("bob-token"), hash_secret("bob-token-2")],
                "experiments": {"*": "write", "7": "none"}},
        "root": {"password_sha256": hash_secret("root-pw"), "admin": True},  # the older, unsalted form
        "nobody": {"tokens_sha256": [hash_secret("nobody-token")]},
    }})


# credentials ----------------------------------------------------------------------------------


def test_hash_secret_is_hex_sha256() -> None:
    assert hash_secret("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_bearer_and_basic_credentials(config: AuthConfig) -> None:
    assert config.authenticate("Bearer alice-token").name == "alice"
    assert config.authenticate("bearer   bob-token-2 ").name == "bob"
    assert config.authenticate(basic("alice", "alice-pw")).name == "alice"
    assert config.authenticate(basic("root", "root-pw")).admin


@pytest.mark.parametrize("header", [
    None, "", "Bearer", "Bearer wrong", "Bearer " + hash_secret("alice-token"), basic("alice", "wrong"),
    basic("alice", "alice-token"), basic("mallory", "alice-pw"), basic("bob", ""), "Basic !!!not-base64",
    "Basic " + base64.b64encode(b"no-colon").decode(), "Basic " + base64.b64encode(b"\xff:\xfe").decode(),
    "Digest username=alice", "alice-token",
])
def test_wrong_or_missing_credentials_are_unauthenticated(config: AuthConfig, header: str | None) -> None:
    with pytest.raises(Unauthenticated):
        config.authenticate(header)


def test_password_hashes_are_salted_scrypt_that_verify_only_their_password() -> None:
    first, second = hash_password("s3cret-pw", n=2**10), hash_password("s3cret-pw", n=2**10)
    assert first.startswith("scrypt$1024$8$1$") and first != second
    assert PasswordHash.parse(first).matches("s3cret-pw") and PasswordHash.parse(second).matches("s3cret-pw")
    assert not PasswordHash.parse(first).matches("s3cret-pw ")
    assert hash_password("x").startswith("scrypt$16384$8$1$")  # the default cost


@pytest.mark.parametrize("text, message", [
    ("hunter2", "expected 'scrypt"),
    ("bcrypt$1$2$3$4$5", "expected 'scrypt"),
    ("scrypt$x$8$1$AAAA$AAAA", "integers"),
    ("scrypt$1024$8$1$not base64!$AAAA", "base64"),
    ("scrypt$1000$8$1$" + "A" * 24 + "$" + "A" * 44, "power of two"),
    ("scrypt$2097152$8$1$" + "A" * 24 + "$" + "A" * 44, "out of range"),
    ("scrypt$1048576$32$1$" + "A" * 24 + "$" + "A" * 44, "MB per check"),
    ("scrypt$1024$8$1$AAAA$" + "A" * 44, "salt must be"),
])
def test_unusable_password_hashes_are_named(text: str, message: str) -> None:
    with pytest.raises(PasswordHashError, match=message):
        PasswordHash.parse(text)


def test_basic_credentials_are_derived_once_then_remembered(config: AuthConfig) -> None:
    header = basic("alice", "alice-pw")
    assert not config.is_quick(header)
    assert config.authenticate(header).name == "alice"
    assert config.is_quick(header)
    assert config.authenticate(header).name == "alice"
    wrong = basic("alice", "alice-pw!")
    with pytest.raises(Unauthenticated):
        config.authenticate(wrong)
    assert not config.is_quick(wrong)  # failures are not remembered: each costs a full derivation
    assert config.is_quick("Bearer alice-token") and config.is_quick(None)


@pytest.mark.parametrize("data, message", [
    ({}, "expected"),
    ({"users": {"a": {"password_hash": "hunter2"}}}, "password_hash: expected 'scrypt"),
    ({"users": {"a": {"password_hash": 7}}}, "password_hash must be a string"),
    ({"users": {"a": {"password_hash": ALICE_PASSWORD_HASH, "password_sha256": hash_secret("x")}}}, "not both"),
    ({"users": {}}, "no users"),
    ({"users": {"a": {"password": "hunter2"}}}, "store hashes only"),
    ({"users": {"a": {"password_sha256": "hunter2"}}}, "64 lowercase hex"),
    ({"users": {"a": {"password_sha256": hash_secret("x").upper()}}}, "64 lowercase hex"),
    ({"users": {"a": {"tokens_sha256": "abc"}}}, "tokens_sha256"),
    ({"users": {"a": {}}}, "cannot sign in"),
    ({"users": {"a:b": {"tokens_sha256": [hash_secret("t")]}}}, "without ':'"),
    ({"users": {"a": {"tokens_sha256": [hash_secret("t")], "admin": "yes"}}}, "admin"),
    ({"users": {"a": {"tokens_sha256": [hash_secret("t")], "experiments": {"*": "owner"}}}}, "none, read or write"),
    ({"users": {"a": {"tokens_sha256": [hash_secret("t")], "experiments": {"../x": "read"}}}}, "integer string"),
    ({"users": {"a": {"tokens_sha256": [hash_secret("t")], "experiments": ["*"]}}}, "experiments must map"),
    ({"users": {"a": []}}, "expected an object"),
    ({"users": {"a": {"tokens_sha256": [hash_secret("t")]}, "b": {"tokens_sha256": [hash_secret("t")]}}},
     "listed twice"),
])
def test_malformed_auth_files_are_refused(data: Any, message: str) -> None:
    with pytest.raises(AuthConfigError, match=message):
        AuthConfig.from_dict(data)


def test_auth_file_loading(tmp_path: Any) -> None:
    with pytest.raises(AuthConfigError, match="cannot read"):
        AuthConfig.load(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(AuthConfigError, match="not valid JSON"):
        AuthConfig.load(broken)
    good = tmp_path / "auth.json"
    good.write_text(json.dumps({"users": {"a": {"tokens_sha256": [hash_secret("t")], "experiments": {"*": "READ"}}}}))
    assert AuthConfig.load(good).users["a"].access("1") is Access.READ


def test_routing_fields_are_what_requirement_reads_and_bad_bodies_are_named() -> None:
    body = json.dumps({"run_id": RUN, "metrics": [{"key": "m", "value": 1, "timestamp": 1}] * 3,
                       "experiment_ids": ["1", 2], "name": "x"}).encode()
    assert routing_fields(body) == {"run_id": RUN, "experiment_ids": ["1", 2]}
    assert routing_fields(b'{"run_uuid": 7, "experiment_id": "5"}') == {"run_uuid": 7, "experiment_id": "5"}
    assert routing_fields(b'{"run_id": "r", "value": NaN}')["run_id"] == "r"  # msgspec refuses NaN literals
    with pytest.raises(InvalidInput, match="JSON object"):
        routing_fields(b'["run_id"]')
    with pytest.raises(InvalidInput):
        routing_fields(b'{"run_id": ')


# bind address ---------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "::ffff:127.0.0.1", "localhost",
                                  "LOCALHOST"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)
    check_exposure(host, None)


@pytest.mark.parametrize("host", ["0.0.0.0", "", "::", "10.1.2.3", "192.168.0.10", "example.com", "128.0.0.1",
                                  "::ffff:10.0.0.1", "localhost.evil.com"])
def test_reachable_hosts_need_an_auth_file(host: str, config: AuthConfig, tmp_path: Any) -> None:
    assert not is_loopback(host)
    with pytest.raises(AuthConfigError, match="TRACKSTREAM_AUTH_FILE"):
        check_exposure(host, None)
    with pytest.raises(AuthConfigError, match="refusing to start"):
        load_auth(None, host)
    check_exposure(host, config)
    path = tmp_path / "auth.json"
    path.write_text(json.dumps({"users": {"a": {"tokens_sha256": [hash_secret("t")]}}}))
    assert load_auth(path, host) is not None


# what each route needs ------------------------------------------------------------------------


def need(method: str, route: str, query: dict[str, Any] | None = None, body: dict[str, Any] | None = None,
         match: dict[str, str] | None = None) -> Any:
    items = [(k, v) for k, vs in (query or {}).items() for v in (vs if isinstance(vs, list) else [vs])]
    return requirement(method, route, MultiDict(items), body, match or {})


@pytest.mark.parametrize("prefix", ["/api/2.0", "/ajax-api/2.0"])
def test_mlflow_routes(prefix: str) -> None:
    m = prefix + "/mlflow"
    assert need("POST", m + "/experiments/create", body={"name": "x"}) is Scope.GLOBAL_WRITE
    assert need("GET", m + "/experiments/get", {"experiment_id": "5"}) == Experiments(Access.READ, ("5",))
    assert need("GET", m + "/experiments/get-by-name", {"experiment_name": "n"}) == ExperimentName(Access.READ, "n")
    assert need("GET", m + "/experiments/search") == VisibleExperiments()
    assert need("POST", m + "/experiments/search", body={}) == VisibleExperiments()
    for action in ("update", "delete", "restore", "set-experiment-tag", "delete-experiment-tag"):
        assert need("POST", f"{m}/experiments/{action}", body={"experiment_id": 5}) == Experiments(Access.WRITE, ("5",))
    assert need("POST", m + "/runs/create", body={"experiment_id": "5"}) == Experiments(Access.WRITE, ("5",))
    assert need("GET", m + "/runs/get", {"run_uuid": RUN}) == Runs(Access.READ, (RUN,))
    assert need("GET", m + "/metrics/get-history", {"run_id": RUN, "metric_key": "x"}) == Runs(Access.READ, (RUN,))
    assert need("GET", m + "/artifacts/list", {"run_id": RUN}) == Runs(Access.READ, (RUN,))
    for action in ("update", "delete", "restore", "log-metric", "log-parameter", "set-tag", "delete-tag", "log-batch",
                   "log-inputs"):
        assert need("POST", f"{m}/runs/{action}", body={"run_id": RUN}) == Runs(Access.WRITE, (RUN,)), action
    assert need("POST", m + "/runs/search", body={"experiment_ids": ["1", 2]}) == Experiments(Access.READ, ("1", "2"))
    assert need("POST", m + "/runs/search", body={}) == Experiments(Access.READ, ())
    assert need("POST", m + "/logged-models/search", body={"experiment_ids": ["3"]}) == Experiments(Access.READ, ("3",))


@pytest.mark.parametrize("prefix", ["/api/2.0", "/ajax-api/2.0"])
def test_logged_model_routes_need_the_models_experiment(prefix: str) -> None:
    m, model = prefix + "/mlflow/logged-models", "m-" + "1" * 32
    assert need("POST", m, body={"experiment_id": "5"}) == Experiments(Access.WRITE, ("5",))
    on_model = {"model_id": model, "tag_key": "k"}
    assert need("GET", m + "/{model_id}", match=on_model) == Models(Access.READ, (model,))
    assert need("GET", m + "/{model_id}/artifacts/directories", match=on_model) == Models(Access.READ, (model,))
    for method, route in (("PATCH", "/{model_id}"), ("DELETE", "/{model_id}"), ("PATCH", "/{model_id}/tags"),
                          ("DELETE", "/{model_id}/tags/{tag_key}"), ("POST", "/{model_id}/params")):
        assert need(method, m + route, body={}, match=on_model) == Models(Access.WRITE, (model,)), route
    assert need("POST", prefix + "/mlflow/runs/outputs", body={"run_id": RUN}) == Runs(Access.WRITE, (RUN,))
    assert need("GET", "/api/ts/models/{model_id}", match=on_model) == Models(Access.READ, (model,))


def test_artifact_routes_check_the_experiment_directory() -> None:
    a = "/api/2.0/mlflow-artifacts/artifacts"
    path = f"12/{RUN}/artifacts/model.pkl"
    assert need("PUT", a + "/{path}", match={"path": path}) == Experiments(Access.WRITE, ("12",))
    assert need("GET", a + "/{path}", match={"path": path}) == Experiments(Access.READ, ("12",))
    assert need("GET", a, {"path": f"12/{RUN}/artifacts/"}) == Experiments(Access.READ, ("12",))
    assert need("GET", a) == AllExperiments(Access.READ)
    assert need("HEAD", a + "/{path}", match={"path": path}) == Experiments(Access.READ, ("12",))
    for bad in ("../12/x", "12/../../etc/passwd", "/etc/passwd", "12\\..\\x", "12/\x00", "C:/x"):
        with pytest.raises(InvalidInput):
            need("GET", a + "/{path}", match={"path": bad})
        with pytest.raises(InvalidInput):
            need("GET", a, {"path": bad})


def test_trackstream_routes() -> None:
    assert need("POST", "/api/ts/sql") is Scope.ADMIN
    assert need("POST", "/api/ts/replay") is Scope.ADMIN
    assert need("GET", "/api/ts/replay") is Scope.ADMIN
    assert need("GET", "/api/ts/rejects") is Scope.ADMIN
    assert need("GET", "/api/ts/status") is Scope.ANYONE
    assert need("GET", "/metrics") is Scope.ANYONE
    assert need("GET", "/api/2.0/mlflow/openapi.json") is Scope.ANYONE
    assert need("GET", "/api/ts/runs") == AllExperiments(Access.READ)
    assert need("GET", "/api/ts/runs", {"experiment_id": "4"}) == Experiments(Access.READ, ("4",))
    assert need("GET", "/api/ts/runs/{run_id}", match={"run_id": RUN}) == Runs(Access.READ, (RUN,))
    assert need("GET", "/api/ts/runs/{run_id}/metrics/{key}", match={"run_id": RUN, "key": "k"}) == \
        Runs(Access.READ, (RUN,))
    assert need("GET", "/api/ts/compare", {"run_id": ["a", "b"], "key": "k"}) == Runs(Access.READ, ("a", "b"))
    assert need("GET", "/api/ts/experiments/{experiment_id}/keys", match={"experiment_id": "4"}) == \
        Experiments(Access.READ, ("4",))


def test_unknown_routes_are_admin_only() -> None:
    assert need("GET", "/api/ts/something-new") is Scope.ADMIN
    assert need("POST", "/api/2.0/mlflow/runs/get", body={}) is Scope.ADMIN
    assert need("DELETE", "/api/2.0/mlflow/experiments/delete") is Scope.ADMIN
    assert need("POST", "/api/2.0/mlflow/registered-models/create", body={}) is Scope.ADMIN


@pytest.mark.parametrize("method, route, query, body, message", [
    ("GET", "/api/2.0/mlflow/experiments/get", {}, None, "experiment_id"),
    ("GET", "/api/2.0/mlflow/experiments/get", {"experiment_id": "../1"}, None, "valid integer"),
    ("POST", "/api/2.0/mlflow/runs/create", {}, {"experiment_id": [1]}, "valid integer"),
    ("GET", "/api/2.0/mlflow/runs/get", {}, None, "run_id"),
    ("POST", "/api/2.0/mlflow/runs/log-batch", {}, {"run_id": 5}, "run_id"),
    ("POST", "/api/2.0/mlflow/runs/search", {}, {"experiment_ids": "1"}, "experiment_ids"),
    ("POST", "/api/2.0/mlflow/runs/search", {}, {"experiment_ids": [["1"]]}, "experiment_ids"),
    ("GET", "/api/2.0/mlflow/experiments/get-by-name", {}, None, "experiment_name"),
])
def test_malformed_ids_are_the_handlers_400(method: str, route: str, query: dict[str, Any], body: Any,
                                            message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        need(method, route, query, body)


# the decision ---------------------------------------------------------------------------------


def test_read_and_write_per_experiment(config: AuthConfig) -> None:
    alice, bob, root, nobody = (config.users[n] for n in ("alice", "bob", "root", "nobody"))
    authorize(alice, Experiments(Access.READ, ("1", "12345")))
    authorize(alice, Experiments(Access.WRITE, ("12345",)))
    with pytest.raises(PermissionDenied, match="write access to experiment"):
        authorize(alice, Experiments(Access.WRITE, ("12345", "1")))
    authorize(bob, Experiments(Access.WRITE, ("1", "2")))
    with pytest.raises(PermissionDenied, match="read access to experiment.*7"):
        authorize(bob, Experiments(Access.READ, ("1", "7")))
    with pytest.raises(PermissionDenied):
        authorize(nobody, Experiments(Access.READ, ("1",)))
    authorize(nobody, Experiments(Access.READ, ()))
    authorize(root, Experiments(Access.WRITE, ("7", "99")))


def test_global_scopes(config: AuthConfig) -> None:
    alice, bob, root, nobody = (config.users[n] for n in ("alice", "bob", "root", "nobody"))
    authorize(bob, Scope.GLOBAL_WRITE)
    authorize(root, Scope.GLOBAL_WRITE)
    with pytest.raises(PermissionDenied, match="create experiments"):
        authorize(alice, Scope.GLOBAL_WRITE)
    for user in (alice, bob, nobody):
        authorize(user, Scope.ANYONE)
        authorize(user, VisibleExperiments())
        with pytest.raises(PermissionDenied, match="admin"):
            authorize(user, Scope.ADMIN)
    authorize(root, Scope.ADMIN)
    authorize(alice, AllExperiments(Access.READ))
    with pytest.raises(PermissionDenied, match="every experiment"):
        authorize(bob, AllExperiments(Access.READ))
    with pytest.raises(PermissionDenied):
        authorize(alice, AllExperiments(Access.WRITE))


def test_search_results_are_cut_to_readable_experiments(config: AuthConfig) -> None:
    experiments = [{"experiment_id": "1"}, {"experiment_id": "7"}, {"experiment_id": "12345"}]
    assert experiments_visible_to(config.users["bob"], experiments) == [{"experiment_id": "1"},
                                                                       {"experiment_id": "12345"}]
    assert experiments_visible_to(config.users["nobody"], experiments) == []
    assert experiments_visible_to(config.users["root"], experiments) == experiments
    only = User("only", tokens_sha256=(hash_secret("t"),), experiments={"12345": Access.READ})
    assert experiments_visible_to(only, experiments) == [{"experiment_id": "12345"}]


# the aiohttp glue -----------------------------------------------------------------------------


class FakeResolver:
    runs = {RUN: "12345", "b" * 32: "7"}
    names = {"mine": "12345", "secret": "7"}

    async def run_experiment(self, run_id: str) -> str:
        if run_id not in self.runs:
            raise NotFound(f"Run with id={run_id} not found")
        return self.runs[run_id]

    async def get_experiment_by_name(self, name: Any) -> dict[str, Any]:
        if name not in self.names:
            raise NotFound(f"Could not find experiment with name '{name}'")
        return {"experiment_id": self.names[name]}


def glue_app(config: AuthConfig) -> web.Application:
    app = web.Application(middlewares=[error_middleware, auth_middleware(config, FakeResolver())])

    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"handled": True})

    async def search(request: web.Request) -> web.Response:
        return web.json_response({"experiments": [{"experiment_id": i} for i in ("1", "7", "12345")],
                                  "next_page_token": "3"})

    app.router.add_get("/health", answer)
    app.router.add_get("/api/2.0/mlflow/runs/get", answer)
    app.router.add_post("/api/2.0/mlflow/runs/log-batch", answer)
    app.router.add_get("/api/2.0/mlflow/experiments/get-by-name", answer)
    app.router.add_get("/api/2.0/mlflow/experiments/search", search)
    app.router.add_post("/api/ts/sql", answer)
    return app


def call(config: AuthConfig, method: str, path: str, headers: dict[str, str] | None = None,
         **kwargs: Any) -> tuple[int, Any, Any]:
    async def go() -> tuple[int, Any, Any]:
        async with TestClient(TestServer(glue_app(config))) as client:
            response = await client.request(method, path, headers=headers or {}, **kwargs)
            text = await response.text()
            return response.status, response.headers, json.loads(text) if text.startswith("{") else text

    return asyncio.run(go())


def test_glue_challenges_missing_credentials_but_not_health(config: AuthConfig) -> None:
    status, headers, body = call(config, "GET", f"/api/2.0/mlflow/runs/get?run_id={RUN}")
    assert status == 401 and body["error_code"] == "UNAUTHENTICATED"
    challenges = headers.getall("WWW-Authenticate")
    assert any(c.startswith("Bearer") for c in challenges) and any(c.startswith("Basic") for c in challenges)
    assert call(config, "GET", "/health")[0] == 200
    assert call(config, "GET", "/no/such/route")[0] == 401
    assert call(config, "GET", "/no/such/route", {"Authorization": "Bearer alice-token"})[0] == 404


def test_glue_resolves_runs_and_names(config: AuthConfig) -> None:
    bob = {"Authorization": "Bearer bob-token"}
    status, _, body = call(config, "GET", f"/api/2.0/mlflow/runs/get?run_id={RUN}", bob)
    assert status == 200 and body == {"handled": True}
    status, _, body = call(config, "GET", f"/api/2.0/mlflow/runs/get?run_id={'b' * 32}", bob)
    assert status == 403 and body["error_code"] == "PERMISSION_DENIED"
    assert call(config, "GET", f"/api/2.0/mlflow/runs/get?run_id={'c' * 32}", bob)[0] == 404
    assert call(config, "GET", "/api/2.0/mlflow/experiments/get-by-name?experiment_name=secret", bob)[0] == 403
    assert call(config, "GET", "/api/2.0/mlflow/experiments/get-by-name?experiment_name=mine", bob)[0] == 200
    assert call(config, "GET", "/api/2.0/mlflow/experiments/get-by-name?experiment_name=none", bob)[0] == 404
    alice = {"Authorization": basic("alice", "alice-pw")}
    assert call(config, "POST", "/api/2.0/mlflow/runs/log-batch", alice, json={"run_id": RUN})[0] == 200
    assert call(config, "POST", "/api/2.0/mlflow/runs/log-batch", alice, json={"run_id": "b" * 32})[0] == 403
    status, _, body = call(config, "POST", "/api/2.0/mlflow/runs/log-batch",
                           {**alice, "Content-Type": "application/json"}, data="[1]")
    assert status == 400 and body["error_code"] == "INVALID_PARAMETER_VALUE"


def test_glue_filters_experiment_search_and_guards_sql(config: AuthConfig) -> None:
    _, _, body = call(config, "GET", "/api/2.0/mlflow/experiments/search", {"Authorization": "Bearer bob-token"})
    assert [e["experiment_id"] for e in body["experiments"]] == ["1", "12345"] and body["next_page_token"] == "3"
    _, _, body = call(config, "GET", "/api/2.0/mlflow/experiments/search", {"Authorization": "Bearer nobody-token"})
    assert "experiments" not in body
    _, _, body = call(config, "GET", "/api/2.0/mlflow/experiments/search", {"Authorization": basic("root", "root-pw")})
    assert len(body["experiments"]) == 3
    assert call(config, "POST", "/api/ts/sql", {"Authorization": "Bearer alice-token"}, json={"query": "1"})[0] == 403
    root = {"Authorization": basic("root", "root-pw")}
    assert call(config, "POST", "/api/ts/sql", root, json={"query": "1"})[0] == 200


def test_every_served_route_has_a_decided_requirement() -> None:
    """A new route is admin-only until it is added to the table; this names it so someone decides."""
    from types import SimpleNamespace

    from trackstream.server.http import create_app
    from trackstream.server.mlflow_api import mlflow_routes
    from trackstream.server.openapi import openapi_routes

    async def nothing(request: web.Request) -> web.Response:
        return web.Response()

    app = create_app(None, None, None)  # type: ignore[arg-type]
    proxy = SimpleNamespace(upload=nothing, download=nothing, list=nothing)
    app.add_routes(mlflow_routes(None, None, proxy, None, None) + openapi_routes())  # type: ignore[arg-type]
    admin_only = {("POST", "/api/ts/sql"), ("POST", "/api/ts/replay"), ("GET", "/api/ts/replay"),
                  ("GET", "/api/ts/rejects")}
    undecided = []
    for route in app.router.routes():
        method, path = route.method, route.resource.canonical
        if method == "HEAD" or path == "/health":
            continue
        try:
            decided = need(method, path, body={}, match={"path": "1/r/artifacts/x", "run_id": RUN, "model_id": "m-" + "0" * 32,
                                                                  "experiment_id": "1"})
        except InvalidInput:
            continue
        if decided is Scope.ADMIN and (method, path) not in admin_only:
            undecided.append((method, path))
    assert not undecided
