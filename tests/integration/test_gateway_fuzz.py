"""Bad input against a real `trackstream server`: a table of malformed requests that must each get a
4xx with an MLflow error body, and a bounded schemathesis run over ``server/openapi.json`` (as the
server serves it) asserting that nothing answers 5xx."""

from __future__ import annotations

import http.client
import json
import os
import time
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, Phase, settings, strategies as st  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

from trackstream.server.http import MAX_REQUEST_BYTES  # noqa: E402
from trackstream.server.openapi import OPENAPI_ROUTE, openapi_document  # noqa: E402
from tests.integration.harness import ServerHandle, running_server  # noqa: E402

API = "/api/2.0/mlflow"
FUZZ_BUDGET_S = float(os.environ.get("TRACKSTREAM_FUZZ_BUDGET_S", "40"))
EXAMPLES_PER_OPERATION = int(os.environ.get("TRACKSTREAM_FUZZ_EXAMPLES", "12"))


@pytest.fixture(scope="module")
def server(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    with running_server(kafka_bootstrap, tmp_path_factory.mktemp("fuzz"), "fz") as handle:
        yield handle


@pytest.fixture(scope="module")
def seeded(server: ServerHandle) -> dict[str, str]:
    """A real experiment and run, so some generated requests get past the "not found" checks."""
    url = server.settings.server_url + API
    experiment_id = requests.post(url + "/experiments/create", json={"name": "fuzz-seed"}, timeout=60).json()[
        "experiment_id"]
    run = requests.post(url + "/runs/create", json={"experiment_id": experiment_id}, timeout=60).json()["run"]
    return {"experiment_id": experiment_id, "run_id": run["info"]["run_id"]}


def post_raw(server: ServerHandle, path: str, data: bytes | str, content_type: str | None = "application/json"
             ) -> requests.Response:
    headers = {"Content-Type": content_type} if content_type else {}
    return requests.post(server.settings.server_url + path, data=data, headers=headers, timeout=60)


def assert_clear_4xx(response: requests.Response, status: int | None = None, match: str = "") -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    if status is not None:
        assert response.status_code == status, response.text[:300]
    body = response.json()
    assert body["error_code"] and body["message"], body
    assert match.lower() in body["message"].lower(), body["message"]


def test_the_openapi_document_is_served_and_covers_the_routes(server: ServerHandle) -> None:
    response = requests.get(server.settings.server_url + OPENAPI_ROUTE, timeout=30)
    assert response.status_code == 200 and response.json() == openapi_document()
    paths = response.json()["paths"]
    assert {API + "/runs/log-batch", API + "/runs/search", API + "/experiments/create",
            "/api/2.0/mlflow-artifacts/artifacts/{path}"} <= set(paths)
    assert paths[API + "/runs/log-batch"]["post"]["requestBody"]["content"]["application/json"]["schema"][
        "properties"]["metrics"]["maxItems"] == 1000


def test_malformed_requests_get_a_clear_4xx(server: ServerHandle, seeded: dict[str, str]) -> None:
    run, experiment = seeded["run_id"], seeded["experiment_id"]
    metric = {"key": "m", "value": 1.0, "timestamp": 1}
    cases: list[tuple[str, Any, int, str]] = [
        ("/runs/log-batch", {"run_id": run, "metrics": "abc"}, 400, "metrics"),
        ("/runs/log-batch", {"run_id": run, "params": {"a": "1"}}, 400, "params"),
        ("/runs/log-batch", {"run_id": run, "tags": [["k", "v"]]}, 400, "tags"),
        ("/runs/log-batch", {"run_id": run, "metrics": [{**metric, "key": 5}]}, 400, "key"),
        ("/runs/log-batch", {"run_id": run, "params": [{"key": "p", "value": 5}]}, 400, "string"),
        ("/runs/log-batch", {"run_id": run, "tags": [{"key": "t", "value": {"x": 1}}]}, 400, "string"),
        ("/runs/log-batch", {"run_id": run, "metrics": [{**metric, "timestamp": 2**70}]}, 400, "timestamp"),
        ("/runs/log-batch", {"run_id": run, "metrics": [{**metric, "step": 2**64}]}, 400, "step"),
        ("/runs/log-batch", {"run_id": run, "metrics": [{**metric, "timestamp": True}]}, 400, "timestamp"),
        ("/runs/log-batch", {"run_id": run, "metrics": [{**metric, "value": [1]}]}, 400, "value"),
        ("/runs/log-batch", {"run_id": run, "metrics": [{**metric, "value": "abc"}]}, 400, "number"),
        ("/runs/log-batch", {"run_id": run, "metrics": [metric] * 1001}, 400, "at most 1000 metrics"),
        ("/runs/log-batch", {"run_id": run, "params": [{"key": f"p{i}", "value": "1"} for i in range(101)]}, 400,
         "at most 100 params"),
        ("/runs/log-batch", {"run_id": run, "tags": [{"key": f"t{i}", "value": "1"} for i in range(101)]}, 400,
         "at most 100 tags"),
        ("/runs/log-batch", {"run_id": run, "metrics": [metric] * 900,
                             "params": [{"key": f"p{i}", "value": "1"} for i in range(100)],
                             "tags": [{"key": f"t{i}", "value": "1"} for i in range(100)]}, 400, "1000"),
        ("/runs/log-batch", {"run_id": True}, 400, "run_id"),
        ("/runs/log-batch", {"run_id": "0" * 32}, 404, "not found"),
        ("/runs/log-metric", f'{{"run_id": "{run}", "key": "m", "value": 1, "timestamp": 1e999}}', 400, "timestamp"),
        ("/runs/log-parameter", {"run_id": run, "key": "p", "value": ["x"]}, 400, "string"),
        ("/runs/set-tag", {"run_id": run, "key": "t", "value": 1.5}, 400, "string"),
        ("/runs/update", {"run_id": run, "status": "KILLED", "end_time": 2**70}, 400, "end_time"),
        ("/runs/update", {"run_id": run, "status": ["x"]}, 400, "status"),
        ("/runs/update", {"run_id": run, "run_name": 5}, 400, "run_name"),
        ("/runs/create", {"experiment_id": experiment, "start_time": 2**63}, 400, "start_time"),
        ("/runs/create", {"experiment_id": experiment, "run_name": ["x"]}, 400, "run_name"),
        ("/runs/create", {"experiment_id": experiment, "user_id": {"a": 1}}, 400, "user_id"),
        ("/runs/create", {"experiment_id": True}, 400, "experiment id"),
        ("/runs/create", {"experiment_id": "١٢"}, 400, "experiment id"),
        ("/runs/search", {"experiment_ids": [experiment], "max_results": -1}, 400, "max_results"),
        ("/runs/search", {"experiment_ids": [experiment], "max_results": 2**70}, 400, "max_results"),
        ("/runs/search", {"experiment_ids": [experiment], "max_results": True}, 400, "max_results"),
        ("/runs/search", {"experiment_ids": [experiment], "max_results": "²"}, 400, "max_results"),
        ("/runs/search", {"experiment_ids": [experiment], "page_token": "bogus"}, 400, "page token"),
        ("/runs/search", {"experiment_ids": [experiment], "page_token": 12}, 400, "page token"),
        ("/runs/search", {"experiment_ids": [experiment], "run_view_type": [1]}, 400, "run_view_type"),
        ("/runs/search", {"experiment_ids": "abc"}, 400, "experiment_ids"),
        ("/runs/search", {"experiment_ids": [[1]]}, 400, "experiment_ids"),
        ("/experiments/search", {"max_results": "abc"}, 400, "max_results"),
        ("/experiments/search", {"max_results": [1]}, 400, "max_results"),
        ("/experiments/search", {"max_results": -5}, 400, "max_results"),
        ("/experiments/search", {"page_token": "x"}, 400, "page token"),
        ("/experiments/search", {"page_token": "9" * 30}, 400, "page token"),
        ("/experiments/create", {"name": 5}, 400, "name"),
        ("/experiments/create", {"name": "t", "tags": [{"key": "k", "value": 5}]}, 400, "string"),
        ("/experiments/set-experiment-tag", {"experiment_id": experiment, "key": "k", "value": ["x"]}, 400, "string"),
        ("/experiments/update", {"experiment_id": {"a": 1}, "new_name": "x"}, 400, "experiment id"),
        ("/runs/log-inputs", {"run_id": run, "datasets": "x"}, 400, "datasets"),
    ]
    for path, body, status, match in cases:
        response = (post_raw(server, API + path, body) if isinstance(body, str)
                    else requests.post(server.settings.server_url + API + path, json=body, timeout=60))
        assert_clear_4xx(response, status, match)

    for path, params, match in [
        ("/metrics/get-history", {"run_id": run, "metric_key": "m", "max_results": "²"}, "max_results"),
        ("/metrics/get-history", {"run_id": run, "metric_key": "m", "max_results": "-1"}, "max_results"),
        ("/metrics/get-history", {"run_id": run, "metric_key": "m", "page_token": "9" * 30}, "page token"),
        ("/metrics/get-history", {"run_id": run}, "metric_key"),
        ("/experiments/search", {"max_results": "abc"}, "max_results"),
        ("/experiments/get", {"experiment_id": "²"}, "experiment id"),
        ("/runs/get", {}, "run_id"),
    ]:
        assert_clear_4xx(requests.get(server.settings.server_url + API + path, params=params, timeout=60), 400, match)
    assert_clear_4xx(requests.get(server.settings.server_url + API + "/runs/get", params={"run_id": "nope"},
                                  timeout=60), 404)
    assert_clear_4xx(requests.get(server.settings.server_url + "/api/ts/runs", params={"limit": "²"}, timeout=60), 400,
                     "limit")

    log_batch = API + "/runs/log-batch"
    assert_clear_4xx(post_raw(server, log_batch, "{}", "text/plain"), 400, "content-type")
    assert_clear_4xx(post_raw(server, log_batch, "{}", None), 400, "content-type")
    assert_clear_4xx(post_raw(server, log_batch, "not json"), 400, "json")
    assert_clear_4xx(post_raw(server, log_batch, b"\xff\xfe{}"), 400, "utf-8")
    assert_clear_4xx(post_raw(server, log_batch, "[1, 2]"), 400, "object")
    assert_clear_4xx(post_raw(server, log_batch, '"string"'), 400, "object")
    assert_clear_4xx(post_raw(server, log_batch, "{}", "application/json; charset=bogus"), 400, "run_id")
    assert_clear_4xx(post_raw(server, "/api/ts/sql", "[1]"), 400, "object")


def test_request_bodies_are_limited(server: ServerHandle, seeded: dict[str, str]) -> None:
    big = json.dumps({"run_id": seeded["run_id"], "tags": [{"key": "t", "value": "x" * MAX_REQUEST_BYTES}]})
    for path in (API + "/runs/log-batch", "/ajax-api/2.0/mlflow/runs/search", API + "/experiments/create",
                 "/api/ts/sql"):
        assert_clear_4xx(post_raw(server, path, big), 413, "byte limit")
    just_under = json.dumps({"run_id": seeded["run_id"], "tags": [{"key": "t", "value": "x" * 900_000}]})
    assert_clear_4xx(post_raw(server, API + "/runs/log-batch", just_under), 400, "8000")

    url = urlsplit(server.settings.server_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    try:
        connection.putrequest("PUT", f"/api/2.0/mlflow-artifacts/artifacts/{seeded['experiment_id']}/"
                                     f"{seeded['run_id']}/artifacts/huge.bin")
        connection.putheader("Content-Length", str(6 * 1024**3))
        connection.endheaders()
        response = connection.getresponse()
        assert response.status == 400 and b"byte limit" in response.read()
    finally:
        connection.close()


def test_artifact_names_the_filesystem_cannot_hold_are_refused(server: ServerHandle, seeded: dict[str, str]) -> None:
    base = server.settings.server_url
    run_prefix = f"{seeded['experiment_id']}/{seeded['run_id']}/artifacts"
    artifacts = base + "/api/2.0/mlflow-artifacts/artifacts"
    assert requests.put(f"{artifacts}/{run_prefix}/file.txt", data=b"x", timeout=60).status_code == 200
    long_name, deep = "x" * 256, "/".join(["y" * 200] * 12)
    for response in (requests.get(artifacts, params={"path": long_name}, timeout=60),
                     requests.get(f"{artifacts}/{long_name}", timeout=60),
                     requests.get(f"{artifacts}/{run_prefix}/{deep}", timeout=60),
                     requests.put(f"{artifacts}/{run_prefix}/{long_name}", data=b"x", timeout=60),
                     requests.put(f"{artifacts}/{run_prefix}/{deep}", data=b"x", timeout=60),
                     requests.get(base + API + "/artifacts/list",
                                  params={"run_id": seeded["run_id"], "path": long_name}, timeout=60)):
        assert_clear_4xx(response, 400, "255 bytes")
    assert_clear_4xx(requests.get(f"{artifacts}/{run_prefix}/file.txt/child", timeout=60), 404)
    assert_clear_4xx(requests.put(f"{artifacts}/{run_prefix}/file.txt/child", data=b"x", timeout=60), 400, "collides")


# schemathesis ---------------------------------------------------------------------------------

# Built from the file the server serves (the test above checks they are equal). Not
# ``schemathesis.pytest.from_fixture``: its lazy loader sets ``Function._nodeid``, which pytest 9 removed.
schema = schemathesis.openapi.from_dict(openapi_document())
_OPERATION_BUDGET_S = FUZZ_BUDGET_S / sum(len(item) for item in openapi_document()["paths"].values())
_first_call: dict[str, float] = {}
_failing: set[str] = set()


_ODD_TEXT = st.sampled_from(["", "²", "١٢", "-1", "0", "9" * 30, "1e999", "NaN", "true", "null", "[]", "../..",
                             "%2e%2e", "\x00", "x" * 300])
_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**80), 2**80) | st.floats(allow_nan=False, allow_infinity=False)
    | _ODD_TEXT | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=5)


def _steer(case: Any, ids: dict[str, str], data: st.DataObject) -> None:
    """Aim some cases at the seeded run and experiment, so they get past "not found" to the deeper
    checks, and give one field of some cases a value of the wrong type or range (schemathesis keeps
    to one mutation per case, which rarely lands on a field behind a valid id)."""
    containers = [c for c in (case.query, case.body) if isinstance(c, dict)]
    if data.draw(st.booleans(), label="use seeded ids"):
        for container in containers:
            for name in ("run_id", "run_uuid", "experiment_id"):
                if name in container:
                    container[name] = ids["experiment_id" if name == "experiment_id" else "run_id"]
            if isinstance(container.get("experiment_ids"), list):
                container["experiment_ids"] = [ids["experiment_id"]]
        if isinstance(case.path_parameters, dict) and "path" in case.path_parameters:
            tail = str(case.path_parameters["path"]).lstrip("/") or "x"
            case.path_parameters["path"] = f"{ids['experiment_id']}/{ids['run_id']}/artifacts/{tail}"
    fields = [(c, k) for c in containers for k in c]
    if fields and data.draw(st.booleans(), label="odd value"):
        container, key = data.draw(st.sampled_from(fields), label="field")
        container[key] = data.draw(_ODD_TEXT | st.text(max_size=20) if container is case.query else _JSON_VALUES,
                                   label="value")


@schema.parametrize()
@schema.given(data=st.data())
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
          phases=[Phase.generate], suppress_health_check=list(HealthCheck))
def test_no_request_gets_a_server_error(case: Any, data: st.DataObject, server: ServerHandle,
                                        seeded: dict[str, str]) -> None:
    _steer(case, seeded, data)
    label = case.operation.label
    started = _first_call.setdefault(label, time.monotonic())
    if time.monotonic() - started > _OPERATION_BUDGET_S and label not in _failing:
        return
    response = case.call(base_url=server.settings.server_url, timeout=60)
    try:
        case.validate_response(response, checks=[not_a_server_error])
    except Exception:
        _failing.add(label)  # let Hypothesis replay and shrink it whatever the budget says
        raise
