"""MLflow 3 model logging end to end: the real, unmodified mlflow client, scikit-learn and lightgbm,
against a real `trackstream server` (real Kafka broker, embedded ClickHouse)."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
import uuid
from urllib.parse import urlparse

import numpy as np
import pytest
import requests

from tests.integration.harness import make_server, wait_until

mlflow = pytest.importorskip("mlflow")
sklearn = pytest.importorskip("sklearn")
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import LoggedModelStatus  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from sklearn.datasets import load_iris  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

# What MLflow 3.17.2 records for `mlflow.sklearn.autolog()` + `LogisticRegression(max_iter=200).fit(X, y)`
# (issue 13): 14 params, 7 training metrics, 2 artifacts, a dataset input and a logged model.
LOGISTIC_REGRESSION_PARAMS = {"C", "class_weight", "dual", "fit_intercept", "intercept_scaling", "l1_ratio",
                              "max_iter", "multi_class", "n_jobs", "penalty", "random_state", "solver", "tol",
                              "verbose", "warm_start"}
TRAINING_METRICS = {"training_accuracy_score", "training_f1_score", "training_log_loss", "training_precision_score",
                    "training_recall_score", "training_roc_auc", "training_score"}
AUTOLOG_ARTIFACTS = {"estimator.html", "training_confusion_matrix.png"}
# The client's artifact download raises requests' HTTPError carrying the server's error body.
LOAD_ERRORS = (MlflowException, requests.HTTPError)
CLOUDPICKLE = "cloudpickle"  # mlflow 3.17's default for log_model is skops, which is not installed here


@pytest.fixture(scope="module")
def server(kafka_bootstrap, tmp_path_factory):
    handle = make_server(kafka_bootstrap, tmp_path_factory.mktemp("models"), f"lm{uuid.uuid4().hex[:6]}")
    handle.start()
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = handle.settings.server_url
    mlflow.set_tracking_uri(handle.settings.server_url)
    yield handle
    if previous is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = previous
    handle.stop()


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True, as_frame=True)
    return X, y


@pytest.fixture(scope="module")
def autologged(server, iris):
    """One autologged sklearn fit, shared by the assertions below."""
    X, y = iris
    mlflow.set_experiment("autolog-sklearn")
    mlflow.sklearn.autolog()
    try:
        with mlflow.start_run() as run:
            LogisticRegression(max_iter=200).fit(X, y)
    finally:
        mlflow.sklearn.autolog(disable=True)
    return MlflowClient().get_run(run.info.run_id)


def test_sklearn_autolog_records_params_metrics_and_artifacts_like_mlflow(autologged):
    params = set(autologged.data.params)
    assert len(params) == 14 and params <= LOGISTIC_REGRESSION_PARAMS
    assert set(autologged.data.metrics) == TRAINING_METRICS
    names = {a.path for a in MlflowClient().list_artifacts(autologged.info.run_id)}
    assert AUTOLOG_ARTIFACTS <= names


def test_sklearn_autolog_ties_a_ready_logged_model_to_the_run(autologged):
    client = MlflowClient()
    outputs = autologged.outputs.model_outputs
    assert len(outputs) == 1
    model = client.get_logged_model(outputs[0].model_id)
    assert model.status == LoggedModelStatus.READY
    assert model.source_run_id == autologged.info.run_id
    assert model.experiment_id == autologged.info.experiment_id
    assert set(model.params) >= set(autologged.data.params)
    assert {m.key for m in model.metrics} == TRAINING_METRICS
    files = {f.path for f in client.list_logged_model_artifacts(model.model_id)}
    assert {"MLmodel", "model.pkl"} <= files


def test_sklearn_autolog_records_the_training_dataset_input(autologged):
    inputs = autologged.inputs.dataset_inputs
    assert any(tag.value == "train" for d in inputs for tag in d.tags if tag.key == "mlflow.data.context")


def test_log_model_then_load_model_predicts_the_same(server, iris):
    X, y = iris
    mlflow.set_experiment("round-trip")
    model = LogisticRegression(max_iter=300).fit(X, y)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(model, name="iris-model", serialization_format=CLOUDPICKLE)
    loaded = mlflow.sklearn.load_model(f"models:/{info.model_id}")
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    pyfunc = mlflow.pyfunc.load_model(info.model_uri)
    np.testing.assert_array_equal(np.asarray(pyfunc.predict(X)), model.predict(X))


def test_search_logged_models_by_experiment_and_by_metric_filter(server, iris):
    X, y = iris
    experiment_id = mlflow.set_experiment("model-search").experiment_id
    client = MlflowClient()
    ids = {}
    for c in (0.01, 10.0):
        with mlflow.start_run() as run:
            info = mlflow.sklearn.log_model(LogisticRegression(C=c, max_iter=300).fit(X, y),
                                            name=f"c{c}".replace(".", "_"), serialization_format=CLOUDPICKLE)
            accuracy = 0.5 if c < 1 else 0.97
            mlflow.log_metric("accuracy", accuracy, model_id=info.model_id, dataset=None)
            ids[c] = info.model_id
    del run
    found = client.search_logged_models(experiment_ids=[experiment_id])
    assert {m.model_id for m in found} == set(ids.values())
    good = mlflow.search_logged_models(experiment_ids=[experiment_id], filter_string="metrics.accuracy > 0.9",
                                       output_format="list")
    assert [m.model_id for m in good] == [ids[10.0]]
    ordered = client.search_logged_models(experiment_ids=[experiment_id],
                                          order_by=[{"field_name": "metrics.accuracy", "ascending": True}])
    assert [m.model_id for m in ordered] == [ids[0.01], ids[10.0]]
    first = client.search_logged_models(experiment_ids=[experiment_id], max_results=1)
    assert len(first) == 1 and first.token
    second = client.search_logged_models(experiment_ids=[experiment_id], max_results=1, page_token=first.token)
    assert {first[0].model_id, second[0].model_id} == set(ids.values())
    by_name = client.search_logged_models(experiment_ids=[experiment_id], filter_string="name = 'c10_0'")
    assert [m.model_id for m in by_name] == [ids[10.0]]

    # metrics tied to a model and a dataset (log-batch), and a search restricted to that dataset
    from mlflow.entities import Metric

    with mlflow.start_run() as run:
        client.log_batch(run.info.run_id, metrics=[
            Metric("f1", 0.2, 1, 0, model_id=ids[0.01], dataset_name="holdout", dataset_digest="d1"),
            Metric("f1", 0.95, 1, 0, model_id=ids[0.01], dataset_name="train", dataset_digest="d2")])
    on_holdout = client.search_logged_models(experiment_ids=[experiment_id], filter_string="metrics.f1 > 0.5",
                                             datasets=[{"dataset_name": "holdout"}])
    on_train = client.search_logged_models(experiment_ids=[experiment_id], filter_string="metrics.f1 > 0.5",
                                           datasets=[{"dataset_name": "train", "dataset_digest": "d2"}])
    assert (list(on_holdout), [m.model_id for m in on_train]) == ([], [ids[0.01]])
    tied = {(m.key, m.dataset_name) for m in client.get_logged_model(ids[0.01]).metrics}
    assert {("f1", "holdout"), ("f1", "train"), ("accuracy", None)} <= tied


def test_logged_model_tags_params_and_delete_follow_mlflow(server):
    client = MlflowClient()
    experiment_id = mlflow.set_experiment("model-crud").experiment_id
    model = client.create_logged_model(experiment_id, name="crud", params={"alpha": "0.1"}, tags={"team": "a"})
    assert model.status == LoggedModelStatus.PENDING
    client.set_logged_model_tags(model.model_id, {"stage": "dev"})
    client.log_model_params(model.model_id, {"beta": "2"})
    client.delete_logged_model_tag(model.model_id, "team")
    got = client.get_logged_model(model.model_id)
    assert got.tags == {"stage": "dev"} and got.params == {"alpha": "0.1", "beta": "2"}
    with pytest.raises(MlflowException, match="No tag"):
        client.delete_logged_model_tag(model.model_id, "team")
    client.delete_logged_model(model.model_id)
    with pytest.raises(MlflowException) as missing:
        client.get_logged_model(model.model_id)
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    deleted = _get_json(server, f"/api/2.0/mlflow/logged-models/{model.model_id}?allow_deleted=true")
    assert deleted["model"]["info"]["model_id"] == model.model_id
    external = mlflow.create_external_model(name="served-elsewhere")  # an MLmodel with no flavors, then READY
    assert client.get_logged_model(external.model_id).status == LoggedModelStatus.READY
    with pytest.raises(MlflowException) as bad:
        client.create_logged_model(experiment_id, name="a/b")
    assert bad.value.error_code == "INVALID_PARAMETER_VALUE"


def _get_json(server, path: str) -> dict:
    with urllib.request.urlopen(server.settings.server_url + path, timeout=30) as response:
        return json.loads(response.read())


def _cut_upload(server, path: str, declared: int, sent: bytes) -> None:
    """PUT a file through the proxy but close the connection after ``sent`` of ``declared`` bytes."""
    url = urlparse(server.settings.server_url)
    with socket.create_connection((url.hostname, url.port)) as sock:
        sock.sendall((f"PUT /api/2.0/mlflow-artifacts/artifacts/{path} HTTP/1.1\r\nHost: {url.netloc}\r\n"
                      f"Content-Type: application/octet-stream\r\nContent-Length: {declared}\r\n\r\n").encode() + sent)
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(10)
        try:
            sock.recv(1024)
        except OSError:
            pass


def test_an_upload_cut_off_half_way_never_makes_the_model_ready(server, tmp_path, iris):
    X, y = iris
    client = MlflowClient()
    experiment_id = mlflow.set_experiment("cut-upload").experiment_id
    model = client.create_logged_model(experiment_id, name="cut")
    saved = tmp_path / "saved"
    mlflow.sklearn.save_model(LogisticRegression(max_iter=300).fit(X, y), saved, serialization_format=CLOUDPICKLE)
    root = f"{experiment_id}/models/{model.model_id}/artifacts"
    http_conn = http.client.HTTPConnection(urlparse(server.settings.server_url).netloc, timeout=30)
    mlmodel = (saved / "MLmodel").read_bytes()
    http_conn.request("PUT", f"/api/2.0/mlflow-artifacts/artifacts/{root}/MLmodel", body=mlmodel)
    assert http_conn.getresponse().status == 200
    pickled = (saved / "model.pkl").read_bytes()
    _cut_upload(server, f"{root}/model.pkl", len(pickled), pickled[: len(pickled) // 2])

    with pytest.raises(MlflowException, match="model.pkl"):
        client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    assert client.get_logged_model(model.model_id).status == LoggedModelStatus.PENDING
    with pytest.raises(LOAD_ERRORS, match="PENDING, not READY"):
        mlflow.sklearn.load_model(f"models:/{model.model_id}")

    client.finalize_logged_model(model.model_id, LoggedModelStatus.FAILED)
    assert client.get_logged_model(model.model_id).status == LoggedModelStatus.FAILED
    late = http.client.HTTPConnection(urlparse(server.settings.server_url).netloc, timeout=30)
    late.request("PUT", f"/api/2.0/mlflow-artifacts/artifacts/{root}/model.pkl", body=pickled)
    refused = late.getresponse()
    assert (refused.status, json.loads(refused.read())["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    with pytest.raises(LOAD_ERRORS, match="FAILED, not READY"):
        mlflow.pyfunc.load_model(f"models:/{model.model_id}")


KILLED_LOGGER = textwrap.dedent("""
    import os, sys, mlflow, numpy as np
    from sklearn.linear_model import LinearRegression
    mlflow.set_tracking_uri(sys.argv[1])
    mlflow.set_experiment("killed-upload")
    model = LinearRegression().fit(np.arange(10).reshape(-1, 1), np.arange(10))
    model.ballast = os.urandom(200 * 1024 * 1024)  # a 200 MB model.pkl: the upload takes a while
    with mlflow.start_run():
        mlflow.sklearn.log_model(model, name="killed", serialization_format="cloudpickle")
""")


def test_a_client_killed_during_the_model_upload_leaves_it_pending(server):
    experiment_id = mlflow.set_experiment("killed-upload").experiment_id
    client = MlflowClient()
    proc = subprocess.Popen([sys.executable, "-c", KILLED_LOGGER, server.settings.server_url],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        found = wait_until(lambda: client.search_logged_models(experiment_ids=[experiment_id]), 120,
                           "the killed client's logged model")
        model_id = found[0].model_id
        staging = server.settings.artifact_root / ".staging"  # where the proxy receives request bodies
        wait_until(lambda: any(p.name.startswith("incoming-") and p.stat().st_size > 0 for p in staging.iterdir()),
                   120, "the model upload to start")
        proc.kill()
    finally:
        proc.kill()
        proc.wait()
    time.sleep(1.0)
    assert client.get_logged_model(model_id).status == LoggedModelStatus.PENDING
    with pytest.raises(LOAD_ERRORS, match="PENDING, not READY"):
        mlflow.sklearn.load_model(f"models:/{model_id}")


def test_lightgbm_autolog_records_metrics_per_iteration_with_steps(server, iris):
    lgb = pytest.importorskip("lightgbm")
    X, y = iris
    mlflow.set_experiment("autolog-lightgbm")
    mlflow.lightgbm.autolog()
    try:
        with mlflow.start_run() as run:
            train = lgb.Dataset(X, y)
            lgb.train({"objective": "multiclass", "num_class": 3, "verbose": -1}, train, num_boost_round=12,
                      valid_sets=[train], valid_names=["train"])
    finally:
        mlflow.lightgbm.autolog(disable=True)
    history = MlflowClient().get_metric_history(run.info.run_id, "train-multi_logloss")
    assert [m.step for m in history] == list(range(12))
    losses = [m.value for m in history]
    assert losses[-1] < losses[0]
    run_data = MlflowClient().get_run(run.info.run_id)
    assert run_data.outputs.model_outputs, "lightgbm autolog logs a model too"


def test_model_events_replay_to_the_same_tables_and_read_as_of(server, autologged):
    model_id = autologged.outputs.model_outputs[0].model_id
    result = server.cli("replay", "--database", f"replayed_{uuid.uuid4().hex[:6]}", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "logged_models" in result.stdout
    rows = server.sql(f"SELECT min(kafka_timestamp_ms) FROM {server.settings.database}.events "
                      f"WHERE aggregate_id = '{model_id}'")
    created_ms = int(rows[0][0])
    at_creation = _get_json(server, f"/api/ts/models/{model_id}?as_of={created_ms}")
    assert at_creation["model"]["info"]["status"] == "LOGGED_MODEL_PENDING"
    now = _get_json(server, f"/api/ts/models/{model_id}")
    assert now["model"]["info"]["status"] == "LOGGED_MODEL_READY"
    db = server.settings.database  # the example query of docs/clickhouse-schema.md
    ranked = server.sql(
        f"SELECT m.model_id, m.name, argMax(x.value, (x.step, x.timestamp_ms)) AS accuracy "
        f"FROM {db}.logged_models_latest m JOIN {db}.logged_model_metrics x USING model_id "
        f"WHERE m.experiment_id = '{autologged.info.experiment_id}' AND m.status = 'READY' "
        f"AND x.key = 'training_accuracy_score' GROUP BY m.model_id, m.name ORDER BY accuracy DESC")
    assert [row[0] for row in ranked] == [model_id]


def test_the_sdk_log_model_is_loaded_by_the_mlflow_client_and_predicts_the_same(server, tmp_path, iris):
    from trackstream.producer.client import TrackingClient

    X, y = iris
    model = LogisticRegression(max_iter=300).fit(X, y)
    saved = tmp_path / "sdk-model"
    mlflow.sklearn.save_model(model, saved, serialization_format=CLOUDPICKLE)
    client = TrackingClient(server.settings)
    try:
        experiment_id = client.create_experiment("sdk-models")
        run_id = client.create_run(experiment_id, run_name="sdk")
        record = client.log_model(run_id, saved, name="sdk-iris", params={"max_iter": 300})
        client.flush()
    finally:
        client.close()
    assert {"MLmodel", "model.pkl"} <= set(record.files) and record.model_uri == f"models:/{record.model_id}"
    logged = wait_until(lambda: (m := MlflowClient().get_logged_model(record.model_id)).status
                        == LoggedModelStatus.READY and m, 60, "the SDK's model to be READY")
    assert (logged.name, logged.source_run_id, logged.params) == ("sdk-iris", run_id, {"max_iter": "300"})
    loaded = mlflow.sklearn.load_model(record.model_uri)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert MlflowClient().get_run(run_id).outputs.model_outputs[0].model_id == record.model_id
