"""The SDK and the gateway on one experiment-id rule, through a real server (Kafka, worker,
embedded ClickHouse) and the real mlflow client: a rename, a deleted experiment, runs refused
where they are created (SDK and gateway, never the materializer), and resuming a finished run."""

from __future__ import annotations

import uuid

import pytest

import trackstream as ts
from trackstream.errors import InvalidInput
from trackstream.producer.client import TrackingClient
from trackstream.schemas.experiment_ids import candidate_experiment_ids
from tests.integration.harness import ServerHandle, running_server, wait_until

mlflow = pytest.importorskip("mlflow")
import requests  # noqa: E402 - installed with mlflow
from mlflow import MlflowClient  # noqa: E402


@pytest.fixture(scope="module")
def server(kafka_bootstrap, tmp_path_factory):
    with running_server(kafka_bootstrap, tmp_path_factory.mktemp("sdk-exp"), "sx") as handle:
        yield handle


@pytest.fixture
def client(server: ServerHandle, monkeypatch):
    monkeypatch.setenv("TRACKSTREAM_HOME", str(server.settings.home))
    c = TrackingClient(server.settings)
    ts.set_client(c)
    yield c
    while ts.active_run() is not None:
        ts.end_run()
    ts.set_client(None)
    c.close()


@pytest.fixture(scope="module")
def mlflow_client(server: ServerHandle) -> MlflowClient:
    return MlflowClient(tracking_uri=server.settings.server_url)


def named(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_experiment(mlflow_client: MlflowClient, name: str):
    return wait_until(lambda: mlflow_client.get_experiment_by_name(name), 60, f"experiment {name}")


def wait_run(mlflow_client: MlflowClient, run_id: str, status: str):
    def done():
        try:
            run = mlflow_client.get_run(run_id)
        except mlflow.exceptions.MlflowException:
            return None
        return run if run.info.status == status else None
    return wait_until(done, 60, f"run {run_id} {status}")


def test_set_experiment_after_a_rename_creates_a_new_experiment_under_the_old_name(client, mlflow_client):
    old, new = named("old"), named("new")
    first = ts.set_experiment(old)
    with ts.start_run() as before:
        ts.log_metric("loss", 1.0)
    ts.flush()
    wait_experiment(mlflow_client, old)
    mlflow_client.rename_experiment(first, new)

    second = ts.set_experiment(old)
    assert second != first and second == candidate_experiment_ids(old)[1]
    with ts.start_run() as after:
        ts.log_metric("loss", 2.0)
    ts.flush()
    assert wait_run(mlflow_client, after.run_id, "FINISHED").info.experiment_id == second
    assert wait_run(mlflow_client, before.run_id, "FINISHED").info.experiment_id == first
    assert mlflow_client.get_experiment(first).name == new
    assert mlflow_client.get_experiment_by_name(old).experiment_id == second
    assert [r.info.run_id for r in mlflow_client.search_runs([first])] == [before.run_id]
    assert [r.info.run_id for r in mlflow_client.search_runs([second])] == [after.run_id]


def test_the_gateway_applies_the_same_rule_to_a_name_freed_by_a_rename(mlflow_client):
    name = named("gw")
    first = mlflow_client.create_experiment(name)
    mlflow_client.rename_experiment(first, named("gw-renamed"))
    assert first == candidate_experiment_ids(name)[0]
    assert mlflow_client.create_experiment(name) == candidate_experiment_ids(name)[1]


def post_run(server: ServerHandle, experiment_id: str) -> tuple[int, dict]:
    """runs/create straight over HTTP, as any MLflow client sends it: (HTTP status, JSON body)."""
    answer = requests.post(f"{server.settings.server_url}/api/2.0/mlflow/runs/create",
                           json={"experiment_id": experiment_id, "start_time": 1}, timeout=30)
    return answer.status_code, answer.json()


def test_runs_in_a_deleted_or_unknown_experiment_are_refused_where_they_are_created(client, mlflow_client, server):
    name = named("doomed")
    experiment_id = ts.set_experiment(name)
    wait_experiment(mlflow_client, name)
    mlflow_client.delete_experiment(experiment_id)
    with pytest.raises(InvalidInput, match="Cannot set a deleted experiment"):
        ts.set_experiment(name)

    with pytest.raises(InvalidInput, match=f"Cannot create a run in experiment {experiment_id}: .*deleted"):
        client.create_run(experiment_id, provenance=False)  # a writer that kept the id from before
    with pytest.raises(InvalidInput, match="Cannot create a run in experiment 4242424242: no experiment"):
        ts.start_run(experiment_id="4242424242")
    assert ts.active_run() is None

    status, body = post_run(server, experiment_id)
    assert (status, body["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    assert f"The experiment {experiment_id} must be in the 'active' state" in body["message"]
    status, body = post_run(server, "4242424242")
    assert (status, body["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    assert "4242424242" in body["message"]

    mlflow_client.restore_experiment(experiment_id)
    with ts.start_run(experiment_id=experiment_id) as run:
        ts.log_metric("loss", 1.0)
    ts.flush()
    assert wait_run(mlflow_client, run.run_id, "FINISHED").info.experiment_id == experiment_id
    assert mlflow_client.search_runs([experiment_id])[0].info.run_id == run.run_id


def test_start_run_with_a_run_id_resumes_a_finished_run_and_ending_it_finishes_it_again(client, mlflow_client):
    ts.set_experiment(named("resume"))
    with ts.start_run() as run:
        ts.log_metric("loss", 1.0, step=0)
    ts.flush()
    wait_run(mlflow_client, run.run_id, "FINISHED")
    with ts.start_run(run_id=run.run_id):
        ts.log_metric("loss", 0.5, step=1)
        ts.flush()
        wait_run(mlflow_client, run.run_id, "RUNNING")
    ts.flush()
    finished = wait_run(mlflow_client, run.run_id, "FINISHED")
    assert [m.value for m in mlflow_client.get_metric_history(run.run_id, "loss")] == [1.0, 0.5]
    assert finished.info.end_time is not None
