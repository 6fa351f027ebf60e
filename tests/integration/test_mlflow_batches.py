"""MLflow log-batch semantics through the unmodified mlflow client: one request is one event, and
exact duplicate points are one point (MLflow's store keeps one)."""

from __future__ import annotations

import uuid

import pytest

from tests.integration.harness import mlflow_tracking_server

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Metric, Param, RunTag  # noqa: E402


@pytest.fixture(scope="module")
def server(kafka_bootstrap, tmp_path_factory):
    with mlflow_tracking_server(kafka_bootstrap, tmp_path_factory.mktemp("batches"), "mb") as handle:
        yield handle


def new_run(client: MlflowClient) -> str:
    return client.create_run(client.create_experiment(f"batch-{uuid.uuid4().hex[:6]}")).info.run_id


def test_log_batch_round_trips_as_one_event(server):
    client = MlflowClient()
    run_id = new_run(client)
    client.log_batch(run_id, metrics=[Metric("loss", 0.5, 1000, 0), Metric("loss", 0.25, 1001, 1)],
                     params=[Param("lr", "0.1")], tags=[RunTag("stage", "dev")])
    data = client.get_run(run_id).data
    assert data.metrics == {"loss": 0.25} and data.params == {"lr": "0.1"} and data.tags["stage"] == "dev"
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "loss")] == [(0, 0.5), (1, 0.25)]
    events = server.sql(f"SELECT event_type, schema_version FROM {server.settings.database}.events "
                        f"WHERE aggregate_id = '{run_id}' AND event_type != 'run_created'")
    assert events == [["metrics_logged", 2]]


def test_an_exact_duplicate_point_is_one_point_everywhere(server):
    client = MlflowClient()
    run_id = new_run(client)
    client.log_metric(run_id, "acc", 0.5, timestamp=1000, step=3)
    client.set_tag(run_id, "between", "1")  # so the repeat below is not a retry of the same request
    client.log_batch(run_id, metrics=[Metric("acc", 0.5, 1000, 3), Metric("acc", 0.5, 1000, 3)])
    # same step, another value or timestamp: distinct points, both kept (as MLflow keeps them)
    client.log_batch(run_id, metrics=[Metric("acc", 0.6, 1000, 3), Metric("acc", 0.5, 1001, 3)])
    expected = [(3, 1000, 0.5), (3, 1000, 0.6), (3, 1001, 0.5)]
    history = client.get_metric_history(run_id, "acc")
    assert sorted((m.step, m.timestamp, m.value) for m in history) == expected
    assert client.get_run(run_id).data.metrics == {"acc": 0.5}  # MLflow's latest: max (step, timestamp, value)
    columns = server.reader.metric_history(run_id, "acc")
    assert sorted(zip(columns["step"], columns["timestamp_ms"], columns["value"])) == expected
    db = server.settings.database
    assert server.sql(f"SELECT step, timestamp_ms, value FROM {db}.metric_points WHERE run_id = '{run_id}' "
                      "ORDER BY step, timestamp_ms, value") == [list(p) for p in expected]
    assert server.sql(f"SELECT count() FROM {db}.metrics WHERE run_id = '{run_id}'") == [[5]]
