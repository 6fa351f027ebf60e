"""The SDK and the gateway on one experiment-id rule, through a real server (Kafka, worker,
embedded ClickHouse) and the real mlflow client: a rename, a deleted experiment, runs the
materializer must refuse, and resuming a finished run."""

from __future__ import annotations

import uuid

import pytest

import trackstream as ts
from trackstream.errors import InvalidInput
from trackstream.producer.client import TrackingClient
from trackstream.schemas.experiment_ids import candidate_experiment_ids
from tests.integration.harness import ServerHandle, make_server, wait_until

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402


@pytest.fixture(scope="module")
def server(kafka_bootstrap, tmp_path_factory):
    handle = make_server(kafka_bootstrap, tmp_path_factory.mktemp("sdk-exp"), f"sx{uuid.uuid4().hex[:6]}")
    handle.start()
    yield handle
    handle.stop()


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


def test_a_deleted_experiment_is_refused_by_the_sdk_and_its_new_runs_by_the_materializer(client, mlflow_client,
                                                                                         server):
    name = named("doomed")
    experiment_id = ts.set_experiment(name)
    wait_experiment(mlflow_client, name)
    mlflow_client.delete_experiment(experiment_id)
    with pytest.raises(InvalidInput, match="Cannot set a deleted experiment"):
        ts.set_experiment(name)

    in_deleted = client.create_run(experiment_id, provenance=False)  # a writer that did not know
    in_unknown = client.create_run("4242424242", provenance=False)
    client.flush()

    def rejected():
        found = {r["aggregate_id"]: r for r in server.reader.rejects(200) if r["aggregate_id"] in (in_deleted, in_unknown)}
        return found if len(found) == 2 else None
    rejects = wait_until(rejected, 60, "both runs rejected")
    assert rejects[in_deleted]["reason"] == "experiment_deleted"
    assert rejects[in_unknown]["reason"] == "unknown_experiment"
    assert "experiment 4242424242 does not exist" in rejects[in_unknown]["detail"]
    with pytest.raises(mlflow.exceptions.MlflowException):
        mlflow_client.get_run(in_deleted)


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
