"""The unmodified mlflow client with MLFLOW_TRACKING_URI=trackstream://host:port: writes go through
the SDK straight to Kafka, reads through the gateway's REST API (with read-your-writes), artifacts
through the gateway's proxy. Checked through the REST API with a second, plain http:// client."""

from __future__ import annotations

import os
import re
import uuid

import numpy as np
import pytest

from tests.integration.harness import running_server

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402

from trackstream.mlflow_store import TrackstreamStore  # noqa: E402


@pytest.fixture(scope="module")
def server(kafka_bootstrap, tmp_path_factory):
    with running_server(kafka_bootstrap, tmp_path_factory.mktemp("plugin"), "pl") as handle:
        yield handle


@pytest.fixture(scope="module")
def plugin_uri(server):
    """The process talks trackstream:// (SDK settings from TRACKSTREAM_* as a user would set them)."""
    s = server.settings
    env = {"TRACKSTREAM_KAFKA": s.kafka_bootstrap, "TRACKSTREAM_TOPIC": s.topic, "TRACKSTREAM_HOME": str(s.home),
           "MLFLOW_TRACKING_URI": f"trackstream://127.0.0.1:{s.server_port}"}
    previous = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    yield env["MLFLOW_TRACKING_URI"]
    mlflow.set_tracking_uri(None)
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def rest(server):
    """A plain REST client: what the checks read through."""
    return MlflowClient(tracking_uri=server.settings.server_url)


def plugin_store() -> TrackstreamStore:
    store = MlflowClient()._tracking_client.store
    assert isinstance(store, TrackstreamStore)
    return store


def writers_of(server, run_id: str) -> set[str]:
    return {row[0] for row in server.sql(f"SELECT DISTINCT writer_id FROM {server.settings.database}.events "
                                         f"WHERE aggregate_id = '{run_id}'")}


def test_fluent_logging_goes_through_the_sdk_and_reads_see_it_at_once(plugin_uri, server, rest, tmp_path):
    experiment_id = mlflow.set_experiment(f"plugin-{uuid.uuid4().hex[:6]}").experiment_id
    notes = tmp_path / "notes.txt"
    notes.write_text("trained well")
    with mlflow.start_run(run_name="fast") as run:
        run_id = run.info.run_id
        mlflow.log_param("lr", 0.01)
        mlflow.log_params({"layers": 4})
        for step in range(100):
            mlflow.log_metric("loss", 1 / (step + 1), step=step)
        mlflow.log_metrics({"acc": 0.9}, step=7)
        mlflow.set_tags({"team": "core", "scratch": "x"})
        mlflow.delete_tag("scratch")
        seen = mlflow.get_run(run_id)  # through the plugin, right after the writes
        assert seen.data.params == {"lr": "0.01", "layers": "4"} and seen.data.metrics["acc"] == 0.9
        assert "scratch" not in seen.data.tags
        mlflow.log_artifact(str(notes), artifact_path="reports")
        mlflow.log_input(mlflow.data.from_numpy(np.arange(6).reshape(3, 2), name="tiny"), context="training")
    assert mlflow.get_run(run_id).info.status == "FINISHED"

    assert plugin_store().client.writer.writer_id in writers_of(server, run_id)  # written via Kafka
    got = rest.get_run(run_id)
    assert got.info.experiment_id == experiment_id and got.info.run_name == "fast"
    assert got.info.status == "FINISHED" and got.data.tags["team"] == "core"
    history = rest.get_metric_history(run_id, "loss")
    assert [m.step for m in history] == list(range(100)) and history[-1].value == pytest.approx(0.01)
    assert [f.path for f in rest.list_artifacts(run_id, "reports")] == ["reports/notes.txt"]
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="reports/notes.txt",
                                                dst_path=str(tmp_path / "dl"), tracking_uri=server.settings.server_url)
    assert open(local).read() == "trained well"


def test_search_and_failed_runs_through_the_plugin(plugin_uri, rest):
    experiment_id = mlflow.set_experiment(f"plugin-search-{uuid.uuid4().hex[:6]}").experiment_id
    for i in range(3):
        with mlflow.start_run(run_name=f"r{i}"):
            mlflow.log_metric("score", i)
    with pytest.raises(RuntimeError), mlflow.start_run(run_name="crash") as crashed:
        raise RuntimeError("boom")
    found = mlflow.search_runs(filter_string="metrics.score >= 1", order_by=["metrics.score DESC"])
    assert list(found["tags.mlflow.runName"]) == ["r2", "r1"]
    assert all(uri.startswith("http://") for uri in found["artifact_uri"])  # the gateway's artifact proxy
    assert rest.get_run(crashed.info.run_id).info.status == "FAILED"
    assert {e.name for e in mlflow.search_experiments()} >= {mlflow.get_experiment(experiment_id).name}


def test_sklearn_autolog_records_params_metrics_and_artifacts(plugin_uri, server, rest):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    mlflow.set_experiment(f"sklearn-{uuid.uuid4().hex[:6]}")
    mlflow.sklearn.autolog()  # MLflow 3 logs the model through the LoggedModel routes (REST, via the store)
    try:
        X, y = load_iris(return_X_y=True)
        LogisticRegression(C=0.5, max_iter=300).fit(X, y)
    finally:
        mlflow.sklearn.autolog(disable=True)
    run_id = mlflow.last_active_run().info.run_id
    got = rest.get_run(run_id)
    assert got.info.status == "FINISHED"
    assert got.data.params["C"] == "0.5" and got.data.params["max_iter"] == "300"
    assert 0.8 < got.data.metrics["training_accuracy_score"] <= 1.0
    assert got.data.tags["estimator_class"] == "sklearn.linear_model._logistic.LogisticRegression"
    artifacts = {f.path for f in rest.list_artifacts(run_id)}
    assert "training_confusion_matrix.png" in artifacts
    models = rest.search_logged_models(experiment_ids=[got.info.experiment_id],
                                       filter_string=f"source_run_id = '{run_id}'")
    assert len(models) == 1
    files = {f.path for f in rest.list_logged_model_artifacts(models[0].model_id)}
    assert {"MLmodel", "model.pkl"} <= files


def test_lightgbm_autolog_records_every_boosting_round(plugin_uri, rest):
    import lightgbm as lgb
    from sklearn.datasets import load_breast_cancer

    mlflow.set_experiment(f"lightgbm-{uuid.uuid4().hex[:6]}")
    mlflow.lightgbm.autolog(log_models=False)
    try:
        X, y = load_breast_cancer(return_X_y=True)
        train, valid = lgb.Dataset(X[:400], y[:400]), lgb.Dataset(X[400:], y[400:])
        with mlflow.start_run() as run:
            lgb.train({"objective": "binary", "learning_rate": 0.2, "num_leaves": 7, "verbose": -1}, train,
                      num_boost_round=25, valid_sets=[valid], valid_names=["valid"])
    finally:
        mlflow.lightgbm.autolog(disable=True)
    run_id = run.info.run_id
    got = rest.get_run(run_id)
    assert got.data.params["num_leaves"] == "7" and got.data.params["num_boost_round"] == "25"
    assert re.fullmatch(r"[a-z]+-[a-z]+-\d{3}", got.info.run_name)  # named as MLflow's stores name runs
    history = rest.get_metric_history(run_id, "valid-binary_logloss")
    assert [m.step for m in history] == list(range(25))
    assert history[-1].value < history[0].value  # it learned
    assert {"feature_importance_gain.json", "feature_importance_split.json"} <= {
        f.path for f in rest.list_artifacts(run_id)}
