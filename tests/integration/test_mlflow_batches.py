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
