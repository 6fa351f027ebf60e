"""Security of the HTTP gateway against a real `trackstream server`: authentication and
per-experiment permissions (server bound to 0.0.0.0 with an auth file), refusal to start exposed
without one, and the shapes of MLflow's path-traversal CVEs (CVE-2023-1177, -2780, -6015,
-6909, -6018, CVE-2024-1594...) against every endpoint that touches the artifact store, with a
sentinel file planted outside the artifact root that must never be read, written or listed."""

from __future__ import annotations

import base64
import http.client
import json
import os
import secrets
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from trackstream.server.auth import hash_secret
from trackstream.server.passwords import hash_password
from trackstream.schemas.experiment_ids import candidate_experiment_ids
from tests.integration.harness import ServerHandle, make_server, running_server

API = "/api/2.0/mlflow"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"


@dataclass
class Api:
    base_url: str
    headers: dict[str, str] = field(default_factory=dict)

    def get(self, route: str, /, **params: Any) -> tuple[int, Any]:
        response = requests.get(self.base_url + route, params=params, headers=self.headers, timeout=60)
        return response.status_code, _body(response)

    def post(self, path: str, body: Any) -> tuple[int, Any]:
        response = requests.post(self.base_url + path, json=body, headers=self.headers, timeout=60)
        return response.status_code, _body(response)

    def put(self, path: str, data: bytes) -> tuple[int, Any]:
        response = requests.put(self.base_url + path, data=data, headers=self.headers, timeout=60)
        return response.status_code, _body(response)

    def raw(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        """Send ``path`` byte for byte (requests and urllib would normalize or re-encode it)."""
        url = urlsplit(self.base_url)
        connection = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
        try:
            connection.putrequest(method, path, skip_accept_encoding=True)
            for key, value in self.headers.items():
                connection.putheader(key, value)
            connection.putheader("Content-Length", str(len(body or b"")))
            connection.endheaders(body or b"")
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def create_run(self, experiment_id: str, **fields: Any) -> str:
        status, body = self.post(API + "/runs/create", {"experiment_id": experiment_id, **fields})
        assert status == 200, body
        return body["run"]["info"]["run_id"]


def _body(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# servers ----------------------------------------------------------------------------------


@dataclass
class Secured:
    server: ServerHandle
    ids: dict[str, str]
    runs: dict[str, str]
    users: dict[str, dict[str, str]]

    def api(self, user: str | None) -> Api:
        return Api(self.server.settings.server_url, dict(self.users[user]) if user else {})


@pytest.fixture(scope="module")
def secured(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A server on 0.0.0.0 with four users. Experiment ids derive from names, so permissions
    can name experiments before they exist."""
    home = tmp_path_factory.mktemp("secured")
    ids = {name: candidate_experiment_ids(name)[0] for name in ("alpha", "beta", "gamma")}
    secret = {k: secrets.token_urlsafe(24) for k in ("alice", "bob", "carol", "root")}
    auth_file = home / "auth.json"
    auth_file.write_text(json.dumps({"users": {
        "alice": {"tokens_sha256": [hash_secret(secret["alice"])],
                  "experiments": {"*": "none", ids["alpha"]: "write", ids["beta"]: "read"}},
        "bob": {"password_hash": hash_password(secret["bob"]), "experiments": {"*": "read", ids["gamma"]: "none"}},
        "carol": {"tokens_sha256": [hash_secret(secret["carol"])], "experiments": {"*": "write"}},
        "root": {"password_hash": hash_password(secret["root"]), "admin": True},
    }}))
    server = make_server(kafka_bootstrap, home, f"sec{uuid.uuid4().hex[:6]}")
    server.env_overrides = {"TRACKSTREAM_AUTH_FILE": str(auth_file), "TRACKSTREAM_SERVER_HOST": "0.0.0.0"}
    server.start()
    users = {"alice": bearer(secret["alice"]), "bob": basic("bob", secret["bob"]), "carol": bearer(secret["carol"]),
             "root": basic("root", secret["root"])}
    root = Api(server.settings.server_url, users["root"])
    for name, experiment_id in ids.items():
        assert root.post(API + "/experiments/create", {"name": name}) == (200, {"experiment_id": experiment_id})
    runs = {name: root.create_run(experiment_id) for name, experiment_id in ids.items()}
    yield Secured(server, ids, runs, users)
    server.stop()


@pytest.fixture(scope="module")
def open_server(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    with running_server(kafka_bootstrap, tmp_path_factory.mktemp("open"), "opn") as server:
        yield server


# authentication ---------------------------------------------------------------------------


def test_credentials_are_required_except_for_health(secured: Secured) -> None:
    anonymous = secured.api(None)
    status, body = anonymous.get(API + "/runs/get", run_id=secured.runs["alpha"])
    assert status == 401 and body["error_code"] == "UNAUTHENTICATED"
    response = requests.get(secured.server.settings.server_url + "/metrics", timeout=30)
    challenges = response.headers["WWW-Authenticate"]
    assert response.status_code == 401 and "Bearer" in challenges and "Basic" in challenges
    assert anonymous.get("/health") == (200, {"status": "ok"})
    assert anonymous.get("/no/such/route")[0] == 401
    for headers in (bearer("not-a-token"), basic("bob", "wrong"), basic("mallory", "x"), {"Authorization": "Token x"},
                    {"Authorization": "Basic %%%"}):
        assert Api(secured.server.settings.server_url, headers).get(API + "/experiments/search")[0] == 401
    status, _ = anonymous.post(API + "/runs/log-parameter", {"run_id": secured.runs["alpha"], "key": "sneaky",
                                                              "value": "1"})
    assert status == 401
    status, body = secured.api("root").get(API + "/runs/get", run_id=secured.runs["alpha"])
    assert status == 200 and "sneaky" not in [p["key"] for p in body["run"]["data"].get("params", [])]


def test_permissions_follow_the_experiment(secured: Secured) -> None:
    ids, runs = secured.ids, secured.runs
    alice, bob, carol, root = (secured.api(u) for u in ("alice", "bob", "carol", "root"))
    batch = {"params": [{"key": f"p{uuid.uuid4().hex[:6]}", "value": "1"}]}
    expected = [
        (alice.get(API + "/experiments/get", experiment_id=ids["alpha"]), 200),
        (alice.get(API + "/experiments/get", experiment_id=ids["gamma"]), 403),
        (alice.get(API + "/experiments/get-by-name", experiment_name="beta"), 200),
        (alice.get(API + "/experiments/get-by-name", experiment_name="gamma"), 403),
        (alice.post(API + "/runs/log-batch", {"run_id": runs["alpha"], **batch}), 200),
        (alice.post(API + "/runs/log-batch", {"run_id": runs["beta"], **batch}), 403),
        (alice.post(API + "/runs/set-tag", {"run_uuid": runs["gamma"], "key": "k", "value": "v"}), 403),
        (alice.get(API + "/runs/get", run_id=runs["beta"]), 200),
        (alice.get(API + "/runs/get", run_uuid=runs["gamma"]), 403),
        (alice.get("/ajax-api/2.0/mlflow/runs/get", run_id=runs["gamma"]), 403),
        (alice.get(API + "/metrics/get-history", run_id=runs["gamma"], metric_key="m"), 403),
        (alice.get(API + "/artifacts/list", run_id=runs["gamma"]), 403),
        (alice.post(API + "/runs/create", {"experiment_id": ids["beta"]}), 403),
        (alice.post(API + "/experiments/update", {"experiment_id": ids["beta"], "new_name": "x"}), 403),
        (alice.post(API + "/experiments/create", {"name": "alice-made"}), 403),
        (alice.post(API + "/runs/search", {"experiment_ids": [ids["alpha"], ids["beta"]]}), 200),
        (alice.post(API + "/runs/search", {"experiment_ids": [ids["alpha"], ids["gamma"]]}), 403),
        (alice.put(f"{ARTIFACTS}/{ids['alpha']}/{runs['alpha']}/artifacts/a.txt", b"mine"), 200),
        (alice.put(f"{ARTIFACTS}/{ids['beta']}/{runs['beta']}/artifacts/a.txt", b"not mine"), 403),
        (alice.get(f"{ARTIFACTS}/{ids['alpha']}/{runs['alpha']}/artifacts/a.txt"), 200),
        (alice.get(f"{ARTIFACTS}/{ids['gamma']}/{runs['gamma']}/artifacts/a.txt"), 403),
        (alice.get(ARTIFACTS), 403),
        (alice.get(ARTIFACTS, path=f"{ids['gamma']}/{runs['gamma']}/artifacts"), 403),
        (alice.post("/api/ts/sql", {"query": "SELECT 1"}), 403),
        (alice.get("/api/ts/rejects"), 403),
        (alice.get(f"/api/ts/runs/{runs['gamma']}"), 403),
        (alice.get(f"/api/ts/runs/{runs['alpha']}"), 200),
        (alice.get("/api/ts/runs"), 403),
        (alice.get("/api/ts/runs", experiment_id=ids["alpha"]), 200),
        (alice.get("/api/ts/status"), 200),
        (alice.get(API + "/openapi.json"), 200),
        (bob.get(API + "/runs/get", run_id=runs["alpha"]), 200),
        (bob.get(API + "/runs/get", run_id=runs["gamma"]), 403),
        (bob.post(API + "/runs/log-batch", {"run_id": runs["alpha"], **batch}), 403),
        (bob.post(API + "/experiments/create", {"name": "bob-made"}), 403),
        (carol.post(API + "/experiments/create", {"name": "carol-made"}), 200),
        (carol.post(API + "/runs/log-batch", {"run_id": runs["gamma"], **batch}), 200),
        (carol.post("/api/ts/sql", {"query": "SELECT 1"}), 403),
        (root.post("/api/ts/sql", {"query": "SELECT 1"}), 200),
        (root.get("/api/ts/rejects"), 200),
        (root.get(ARTIFACTS), 200),
    ]
    wrong = [(i, got, want) for i, ((got, body), want) in enumerate(expected) if got != want]
    assert not wrong, wrong
    status, body = alice.get(API + "/runs/get", run_id=runs["gamma"])
    assert body["error_code"] == "PERMISSION_DENIED" and ids["gamma"] in body["message"]


def test_experiment_search_shows_only_readable_experiments(secured: Secured) -> None:
    def names(user: str) -> set[str]:
        status, body = secured.api(user).post(API + "/experiments/search", {"max_results": 1000})
        assert status == 200, body
        return {e["name"] for e in body.get("experiments", [])}

    assert names("alice") == {"alpha", "beta"}
    assert "gamma" not in names("bob") and {"alpha", "beta", "Default"} <= names("bob")
    assert {"alpha", "beta", "gamma", "Default"} <= names("root")


def test_the_mlflow_client_signs_in_with_a_token(secured: Secured, monkeypatch: pytest.MonkeyPatch) -> None:
    mlflow = pytest.importorskip("mlflow")
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient(tracking_uri=secured.server.settings.server_url)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", secured.users["alice"]["Authorization"].split(" ", 1)[1])
    client.log_metric(secured.runs["alpha"], "loss", 0.5, step=1)
    assert client.get_run(secured.runs["beta"]).info.experiment_id == secured.ids["beta"]
    with pytest.raises(MlflowException, match="PERMISSION_DENIED"):
        client.get_run(secured.runs["gamma"])
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN")
    with pytest.raises(MlflowException, match="UNAUTHENTICATED"):
        client.get_run(secured.runs["alpha"])


@pytest.mark.parametrize("auth_file, message", [
    (None, "refusing to start"),
    ({"users": {"alice": {"password": "hunter2"}}}, "store hashes only"),
])
def test_refuses_to_start_exposed_or_misconfigured(kafka_bootstrap: str, tmp_path: Path, auth_file: Any,
                                                   message: str) -> None:
    server = make_server(kafka_bootstrap, tmp_path, f"ref{uuid.uuid4().hex[:6]}")
    server.env_overrides = {"TRACKSTREAM_SERVER_HOST": "0.0.0.0"}
    if auth_file is not None:
        (tmp_path / "auth.json").write_text(json.dumps(auth_file))
        server.env_overrides["TRACKSTREAM_AUTH_FILE"] = str(tmp_path / "auth.json")
    server.start(wait=False)
    try:
        assert server.process is not None and server.process.wait(60) != 0
    except subprocess.TimeoutExpired:
        server.kill()
        raise AssertionError(f"the server started:\n{server.log_tail()}") from None
    assert message in server.log_tail()


# path traversal -----------------------------------------------------------------------------


@dataclass
class Target:
    api: Api
    home: Path
    root: Path
    experiment_id: str
    run_id: str
    sentinel: str
    outside: Path

    @property
    def run_prefix(self) -> str:
        return f"{self.experiment_id}/{self.run_id}/artifacts"

    def assert_refused(self, status: int, body: Any) -> None:
        text = body if isinstance(body, (str, bytes)) else json.dumps(body)
        text = text.decode(errors="replace") if isinstance(text, bytes) else text
        assert 400 <= status < 500, (status, text[:300])
        assert self.sentinel not in text and "root:x:0:0" not in text and "outside-file" not in text


@pytest.fixture(scope="module", params=["open", "secured-admin"])
def target(request: pytest.FixtureRequest) -> Target:
    """A run with one artifact, a sentinel outside the artifact root, and links in the run's
    artifact directory pointing at it (a directory link, a file link and a dangling one)."""
    if request.param == "open":
        server: ServerHandle = request.getfixturevalue("open_server")
        api = Api(server.settings.server_url)
    else:
        secured: Secured = request.getfixturevalue("secured")
        server, api = secured.server, secured.api("root")
    home = server.settings.home
    status, body = api.post(API + "/experiments/create", {"name": f"traversal-{request.param}"})
    assert status == 200, body
    experiment_id = body["experiment_id"]
    run_id = api.create_run(experiment_id)
    assert api.put(f"{ARTIFACTS}/{experiment_id}/{run_id}/artifacts/ok.txt", b"fine")[0] == 200
    sentinel = f"SENTINEL-{uuid.uuid4().hex}"
    outside = home / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "secret.txt").write_text(sentinel)
    run_dir = server.settings.artifact_root / experiment_id / run_id / "artifacts"
    assert (run_dir / "ok.txt").read_bytes() == b"fine"
    os.symlink(outside, run_dir / "link")
    os.symlink(outside / "secret.txt", run_dir / "secret-link.txt")
    os.symlink(outside / "missing.txt", run_dir / "dangling.txt")
    return Target(api, home, server.settings.artifact_root, experiment_id, run_id, sentinel, outside)


def traversal_paths(t: Target, name: str) -> list[str]:
    """Raw (already percent-encoded where shown) artifact paths aiming at ``outside/<name>``."""
    up = "../" * 4
    absolute = str(t.outside / name)
    return [
        f"../../outside/{name}", f"{t.run_prefix}/{up}../outside/{name}",
        f"{t.run_prefix}/{'%2e%2e/' * 5}outside/{name}", f"{t.run_prefix}/{'..%2f' * 5}outside%2f{name}",
        f"{t.run_prefix}/{'%252e%252e/' * 5}outside/{name}", f"{t.run_prefix}/{'%25252e%25252e%25252f' * 5}x",
        f"{t.run_prefix}/{'..%5c' * 5}outside%5c{name}", f"{t.run_prefix}/{'..%255c' * 5}outside%255c{name}",
        f"/{absolute.lstrip('/')}", f"%2F{absolute.lstrip('/').replace('/', '%2F')}", "%2Fetc%2Fpasswd",
        f"file:{absolute}", f"file%3A%2F%2F{absolute.replace('/', '%2F')}",
        f"{t.run_prefix}/x%00/{up}{name}", f"{t.run_prefix}/{name}%00.txt", f"{t.run_prefix}/link/{name}",
        f"{t.run_prefix}/./link/{name}", f"{t.run_prefix}//link/{name}", f"C:%5C{name}",
        f"{t.run_prefix}/ok.txt%23/{up}{up}outside/{name}",
    ]


def test_downloads_never_leave_the_artifact_root(target: Target) -> None:
    assert target.api.raw("GET", f"{ARTIFACTS}/{target.run_prefix}/ok.txt") == (200, b"fine")
    for path in traversal_paths(target, "secret.txt") + [f"{target.run_prefix}/secret-link.txt",
                                                          f"{target.run_prefix}/dangling.txt"]:
        for prefix in (ARTIFACTS, "/ajax-api/2.0/mlflow-artifacts/artifacts"):
            status, body = target.api.raw("GET", f"{prefix}/{path}")
            target.assert_refused(status, body)


def paths_containing(root: Path, marker: str) -> list[str]:
    """Every file or directory under ``root`` whose name contains ``marker``. ``os.walk`` skips
    directories that vanish while it walks (the live engine's temporary insert parts under
    ``root/clickhouse`` come and go), where ``Path.rglob`` raises."""
    return [os.path.join(top, name) for top, dirs, files in os.walk(root) for name in dirs + files if marker in name]


def test_uploads_never_leave_the_artifact_root(target: Target) -> None:
    marker = f"pwned-{uuid.uuid4().hex[:8]}"
    tmp_target = Path("/tmp") / f"{marker}.txt"
    paths = traversal_paths(target, f"{marker}.txt") + traversal_paths(target, "secret.txt") + [
        f"{target.run_prefix}/ok.txt/{marker}.txt", f"{target.run_prefix}/{'../' * 12}tmp/{marker}.txt",
        f"{target.run_prefix}/{'%2e%2e/' * 12}tmp/{marker}.txt", f"{target.run_prefix}/secret-link.txt/{marker}"]
    for path in paths:
        status, body = target.api.raw("PUT", f"{ARTIFACTS}/{path}", b"outside-file " + marker.encode())
        target.assert_refused(status, body)
    assert (target.outside / "secret.txt").read_text() == target.sentinel
    assert sorted(p.name for p in target.outside.iterdir()) == ["secret.txt"]
    assert not paths_containing(target.home, marker) and not tmp_target.exists()


def test_listings_never_leave_the_artifact_root(target: Target) -> None:
    status, body = target.api.get(API + "/artifacts/list", run_id=target.run_id)
    assert status == 200 and [f["path"] for f in body["files"]] == ["ok.txt"]
    status, body = target.api.get(ARTIFACTS, path=target.run_prefix)
    assert status == 200 and [f["path"] for f in body["files"]] == ["ok.txt"]
    decoded = ["../../outside", "..", "/", "/etc", str(target.outside), "%2e%2e/%2e%2e", "..%2f..%2f..",
               "%252e%252e/%252e%252e/%252e%252e", "..\\..\\outside", "x\x00y", "link", "link/", "secret-link.txt",
               "file:///etc", "./link", "ok.txt#/../../../outside"]
    for sub in decoded:
        status, body = target.api.get(API + "/artifacts/list", run_id=target.run_id, path=sub)
        target.assert_refused(status, body)
    inside_run = [f"{target.run_prefix}/{sub}" for sub in decoded if sub != "/"]
    for sub in inside_run + ["..", "/", "/etc", str(target.outside), "%2e%2e", f"{target.experiment_id}/../.."]:
        status, body = target.api.get(ARTIFACTS, path=sub)
        target.assert_refused(status, body)


def test_clients_cannot_choose_where_artifacts_go(target: Target) -> None:
    for location in (f"file://{target.outside}", "file:///etc", f"file://{target.outside}#/../../etc", "/etc",
                     str(target.outside), "../../outside", "s3://bucket/x", "mlflow-artifacts:/../../x",
                     "http://169.254.169.254/latest/meta-data", "x" * 5000):
        name = f"located-{uuid.uuid4().hex[:6]}"
        status, body = target.api.post(API + "/experiments/create", {"name": name, "artifact_location": location})
        target.assert_refused(status, body)
        assert target.api.get(API + "/experiments/get-by-name", experiment_name=name)[0] == 404
    run_id = target.api.create_run(target.experiment_id, tags=[
        {"key": "mlflow.source.name", "value": f"file://{target.outside}/secret.txt"},
        {"key": "mlflow.source.type", "value": "LOCAL"}])
    status, body = target.api.get(API + "/runs/get", run_id=run_id)
    assert status == 200 and body["run"]["info"]["artifact_uri"] == f"mlflow-artifacts:/{target.experiment_id}/" \
                                                                      f"{run_id}/artifacts"
    assert target.sentinel not in json.dumps(body)
    assert target.api.get(API + "/artifacts/list", run_id=run_id)[1].get("files") is None


def test_an_upload_onto_a_link_replaces_the_link_not_its_target(target: Target) -> None:
    """The last path component is never written through: the link itself becomes the artifact."""
    for name in ("secret-link.txt", "dangling.txt", "link"):
        assert target.api.raw("PUT", f"{ARTIFACTS}/{target.run_prefix}/{name}", b"replaced")[0] == 200
        assert not (target.root / target.run_prefix / name).is_symlink()
    assert (target.outside / "secret.txt").read_text() == target.sentinel
    assert sorted(p.name for p in target.outside.iterdir()) == ["secret.txt"]
    assert target.api.raw("GET", f"{ARTIFACTS}/{target.run_prefix}/secret-link.txt") == (200, b"replaced")


def test_logged_models_follow_their_experiments_permissions(secured: Secured) -> None:
    ids = secured.ids
    alice, root = secured.api("alice"), secured.api("root")
    status, created = alice.post(API + "/logged-models", {"experiment_id": ids["alpha"], "name": "mine"})
    assert status == 200, created
    mine = created["model"]["info"]["model_id"]
    status, theirs = root.post(API + "/logged-models", {"experiment_id": ids["gamma"], "name": "theirs"})
    assert status == 200, theirs
    theirs_id = theirs["model"]["info"]["model_id"]
    tags = {"tags": [{"key": "k", "value": "v"}]}

    def patch(model_id: str) -> int:
        return requests.patch(f"{alice.base_url}{API}/logged-models/{model_id}/tags", json=tags,
                              headers=alice.headers, timeout=60).status_code

    assert (alice.post(API + "/logged-models", {"experiment_id": ids["beta"]})[0],
            alice.get(f"{API}/logged-models/{mine}")[0], alice.get(f"{API}/logged-models/{theirs_id}")[0],
            patch(mine), patch(theirs_id),
            alice.put(f"{ARTIFACTS}/{ids['alpha']}/models/{mine}/artifacts/MLmodel", b"flavors: {}\n")[0],
            alice.put(f"{ARTIFACTS}/{ids['gamma']}/models/{theirs_id}/artifacts/MLmodel", b"x")[0],
            alice.post(API + "/logged-models/search", {"experiment_ids": [ids["gamma"]]})[0],
            alice.get(f"/api/ts/models/{theirs_id}")[0]) == (403, 200, 403, 200, 403, 200, 403, 403, 403)


# '#' in artifact paths ------------------------------------------------------------------------


def test_a_hash_in_an_artifact_path_is_refused_on_every_route(target: Target) -> None:
    """'#' starts a URL fragment, so clients and proxies cut a path there: every artifact route
    refuses it with a 400 naming the path, whether written raw, percent-encoded or double-encoded,
    and nothing is stored (a raw '#' must not silently become an upload to the truncated name)."""
    t = target
    status, body = t.api.post(API + "/logged-models", {"experiment_id": t.experiment_id, "name": "hashed"})
    assert status == 200, body
    model_id = body["model"]["info"]["model_id"]
    marker = f"frag{uuid.uuid4().hex[:6]}"
    requests_ = []
    for written, shown in ((f"file%23{marker}.txt", f"file#{marker}.txt"),
                           (f"file%2523{marker}.txt", f"file%23{marker}.txt"),
                           (f"file#{marker}.txt", f"file#{marker}.txt")):
        for prefix in (ARTIFACTS, "/ajax-api/2.0/mlflow-artifacts/artifacts"):
            requests_ += [("PUT", f"{prefix}/{t.run_prefix}/{written}", shown),
                          ("GET", f"{prefix}/{t.run_prefix}/{written}", shown),
                          ("GET", f"{prefix}?path={t.run_prefix}/{written}", shown)]
        requests_ += [("GET", f"{API}/artifacts/list?run_id={t.run_id}&path={written}", shown),
                      ("GET", f"{API}/logged-models/{model_id}/artifacts/directories?artifact_directory_path={written}",
                       shown)]
    for method, path, shown in requests_:
        status, raw = t.api.raw(method, path, b"outside-file" if method == "PUT" else None)
        assert status == 400, (method, path, status, raw[:300])
        body = json.loads(raw)
        assert body["error_code"] == "INVALID_PARAMETER_VALUE", (method, path, body)
        assert "'#'" in body["message"] and shown in body["message"], (method, path, body["message"])
    run_dir = t.root / t.run_prefix
    assert not paths_containing(t.root, marker) and not (run_dir / "file").exists()
