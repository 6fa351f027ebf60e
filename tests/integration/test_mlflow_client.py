"""The acceptance test of the MLflow gateway: the real, unmodified `mlflow` client from PyPI,
pointed at trackstream with MLFLOW_TRACKING_URI."""

from __future__ import annotations

import math
import uuid

import pytest
import requests

from tests.integration.harness import mlflow_tracking_server

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402


@pytest.fixture(scope="module")
def tracking_uri(kafka_bootstrap, tmp_path_factory):
    with mlflow_tracking_server(kafka_bootstrap, tmp_path_factory.mktemp("mlflow"), "ml") as server:
        yield server.settings.server_url


def test_fluent_run_lifecycle_with_artifacts(tracking_uri, tmp_path):
    experiment_id = mlflow.set_experiment("acceptance").experiment_id
    artifact = tmp_path / "notes.txt"
    artifact.write_text("trained well")
    with mlflow.start_run(run_name="baseline") as run:
        mlflow.log_param("lr", 0.01)
        mlflow.log_params({"layers": 4, "optimizer": "adam"})
        for step in range(20):
            mlflow.log_metric("loss", 1 / (step + 1), step=step)
        mlflow.log_metrics({"acc": 0.9, "weird": float("nan")}, step=3)
        mlflow.set_tag("team", "core")
        mlflow.set_tags({"stage": "dev"})
        mlflow.log_artifact(str(artifact), artifact_path="reports")
        mlflow.log_dict({"a": 1}, "config/params.json")
        run_id = run.info.run_id

    client = MlflowClient()
    got = client.get_run(run_id)
    assert got.info.status == "FINISHED" and got.info.run_name == "baseline"
    assert got.info.experiment_id == experiment_id
    assert got.data.params == {"lr": "0.01", "layers": "4", "optimizer": "adam"}
    assert got.data.metrics["loss"] == pytest.approx(1 / 20) and got.data.metrics["acc"] == 0.9
    assert math.isnan(got.data.metrics["weird"])
    assert got.data.tags["team"] == "core" and got.data.tags["stage"] == "dev"
    assert got.data.tags["mlflow.runName"] == "baseline"

    history = client.get_metric_history(run_id, "loss")
    assert [m.step for m in history] == list(range(20))
    assert history[-1].value == pytest.approx(0.05)

    top = {f.path: f for f in client.list_artifacts(run_id)}
    assert set(top) == {"reports", "config"} and top["reports"].is_dir
    assert [f.path for f in client.list_artifacts(run_id, "reports")] == ["reports/notes.txt"]
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="reports/notes.txt",
                                                dst_path=str(tmp_path / "dl"))
    assert open(local).read() == "trained well"


def test_param_change_is_rejected_like_mlflow(tracking_uri):
    mlflow.set_experiment("acceptance")
    with mlflow.start_run():
        mlflow.log_param("lr", 0.01)
        mlflow.log_param("lr", 0.01)  # same value: a no-op
        with pytest.raises(MlflowException, match="Changing param values is not allowed"):
            mlflow.log_param("lr", 0.02)


def test_search_runs_with_filters_and_order(tracking_uri):
    experiment_id = mlflow.set_experiment(f"search-{uuid.uuid4().hex[:6]}").experiment_id
    for i, (lr, acc) in enumerate([(0.1, 0.7), (0.01, 0.9), (0.001, 0.8)]):
        with mlflow.start_run(run_name=f"r{i}"):
            mlflow.log_param("lr", lr)
            mlflow.log_metric("acc", acc)
            mlflow.set_tag("family", "mlp" if i < 2 else "cnn")
    runs = mlflow.search_runs([experiment_id], filter_string="metrics.acc > 0.75", order_by=["metrics.acc DESC"])
    assert list(runs["tags.mlflow.runName"]) == ["r1", "r2"]
    client_runs = MlflowClient().search_runs([experiment_id], "params.lr = '0.1' and tags.family = 'mlp'")
    assert [r.info.run_name for r in client_runs] == ["r0"]
    paged = MlflowClient().search_runs([experiment_id], max_results=2, order_by=["attributes.run_name ASC"])
    assert [r.info.run_name for r in paged] == ["r0", "r1"] and paged.token
    with pytest.raises(MlflowException, match="(?i)invalid"):
        MlflowClient().search_runs([experiment_id], "metrics.acc > 0.5 OR params.lr = '1'")


def test_client_experiment_calls(tracking_uri):
    client = MlflowClient()
    name = f"exp-{uuid.uuid4().hex[:6]}"
    experiment_id = client.create_experiment(name, tags={"owner": "me"})
    with pytest.raises(MlflowException, match="already exists"):
        client.create_experiment(name)
    assert client.get_experiment(experiment_id).name == name
    assert client.get_experiment_by_name(name).tags["owner"] == "me"
    client.rename_experiment(experiment_id, name + "-renamed")
    client.set_experiment_tag(experiment_id, "stage", "prod")
    got = client.get_experiment(experiment_id)
    assert got.name == name + "-renamed" and got.tags["stage"] == "prod"
    assert name + "-renamed" in [e.name for e in client.search_experiments()]
    client.delete_experiment(experiment_id)
    assert client.get_experiment(experiment_id).lifecycle_stage == "deleted"
    assert name + "-renamed" not in [e.name for e in client.search_experiments()]
    client.restore_experiment(experiment_id)
    assert client.get_experiment(experiment_id).lifecycle_stage == "active"
    assert client.get_experiment_by_name("no-such-experiment-anywhere") is None


def test_client_deletes_an_experiment_tag(tracking_uri):
    client = MlflowClient()
    experiment_id = client.create_experiment(f"tagged-{uuid.uuid4().hex[:6]}", tags={"owner": "me", "stage": "dev"})
    client.delete_experiment_tag(experiment_id, "owner")
    assert client.get_experiment(experiment_id).tags == {"stage": "dev"}
    with pytest.raises(MlflowException, match="No tag with name"):
        client.delete_experiment_tag(experiment_id, "owner")
    client.delete_experiment(experiment_id)
    with pytest.raises(MlflowException, match="must be in the 'active' state"):
        client.delete_experiment_tag(experiment_id, "stage")


def test_client_searches_experiments_with_filters_order_and_pages(tracking_uri):
    import time

    from mlflow.entities import ViewType

    client = MlflowClient()
    batch = uuid.uuid4().hex[:8]
    ids = {}
    for name, team in [("Alpha", "core"), ("beta", "core"), ("gamma", "edge")]:
        ids[name] = client.create_experiment(f"{batch}-{name}", tags={"batch": batch, "team": team})
        time.sleep(0.01)  # distinct creation times
    mine = f"tags.batch = '{batch}'"

    def names(filter_string: str, order_by: list[str] | None = None, **kwargs) -> list[str]:
        found = client.search_experiments(filter_string=filter_string, order_by=order_by, **kwargs)
        return [e.name.removeprefix(f"{batch}-") for e in found]

    assert names(mine) == ["gamma", "beta", "Alpha"]  # MLflow's default: newest first
    assert names(f"{mine} AND tags.team = 'core'", ["name ASC"]) == ["Alpha", "beta"]
    assert names(f"{mine} AND tags.team != 'core'") == ["gamma"]
    assert names(f"{mine} AND attribute.name LIKE '%-a%'") == []  # LIKE is case-sensitive
    assert names(f"{mine} AND name ILIKE '%-a%'") == ["Alpha"]
    assert names(mine, ["name DESC"]) == ["gamma", "beta", "Alpha"]
    assert names(mine, ["experiment_id ASC"]) == [n for n, _ in sorted(ids.items(), key=lambda kv: int(kv[1]))]
    beta = client.get_experiment(ids["beta"])
    assert names(f"{mine} AND creation_time >= {beta.creation_time}", ["creation_time ASC"]) == ["beta", "gamma"]
    time.sleep(0.01)
    client.set_experiment_tag(ids["Alpha"], "touched", "yes")
    assert names(f"{mine} AND last_update_time > {beta.last_update_time}", ["last_update_time DESC"])[0] == "Alpha"
    assert names(f"{mine} AND tags.touched = 'yes'") == ["Alpha"]

    first = client.search_experiments(filter_string=mine, order_by=["name ASC"], max_results=2)
    assert [e.name for e in first] == [f"{batch}-Alpha", f"{batch}-beta"] and first.token
    rest = client.search_experiments(filter_string=mine, order_by=["name ASC"], max_results=2, page_token=first.token)
    assert [e.name for e in rest] == [f"{batch}-gamma"] and not rest.token

    client.delete_experiment(ids["gamma"])
    assert names(mine) == ["beta", "Alpha"]
    assert names(mine, view_type=ViewType.DELETED_ONLY) == ["gamma"]
    assert names(mine, ["name ASC"], view_type=ViewType.ALL) == ["Alpha", "beta", "gamma"]

    for bad, message in [("owner = 'x'", "Invalid attribute key 'owner'"),
                         ("metrics.acc > 1", "Invalid entity type 'metrics'"),
                         ("creation_time LIKE '1%'", "Invalid comparator 'LIKE'")]:
        with pytest.raises(MlflowException, match=message) as info:
            client.search_experiments(filter_string=bad)
        assert info.value.error_code == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException, match="tags.team"):
        client.search_experiments(order_by=["tags.team"])
    got = requests.get(f"{tracking_uri}/api/2.0/mlflow/experiments/search", timeout=30, params=[
        ("filter", mine), ("order_by", "name DESC"), ("max_results", "2"), ("view_type", "ALL")]).json()
    assert [e["name"] for e in got["experiments"]] == [f"{batch}-gamma", f"{batch}-beta"] and got["next_page_token"]


def test_run_delete_restore_and_writes_to_deleted_runs(tracking_uri):
    client = MlflowClient()
    experiment_id = mlflow.set_experiment("acceptance").experiment_id
    run = client.create_run(experiment_id)
    client.delete_run(run.info.run_id)
    assert client.get_run(run.info.run_id).info.lifecycle_stage == "deleted"
    with pytest.raises(MlflowException, match="must be in the 'active' state"):
        client.log_metric(run.info.run_id, "x", 1.0)
    client.restore_run(run.info.run_id)
    client.log_metric(run.info.run_id, "x", 1.0)
    client.set_terminated(run.info.run_id, "KILLED")
    assert client.get_run(run.info.run_id).info.status == "KILLED"
    with pytest.raises(MlflowException, match="not found"):
        client.get_run(uuid.uuid4().hex)


def test_the_run_create_answers_is_the_run_a_later_get_reads(tracking_uri):
    """runs/create answers from the event it appended (no wait for the worker); that answer must be
    exactly what the materialized run reads back as."""
    client = MlflowClient()
    experiment_id = client.create_experiment(f"create-answer-{uuid.uuid4().hex[:6]}")
    created = client.create_run(experiment_id, run_name="answered", tags={"team": "core", "mlflow.user": "ana"},
                                start_time=1_700_000_000_123)
    got = client.get_run(created.info.run_id)
    assert created.info.to_proto() == got.info.to_proto()
    assert created.data.tags == got.data.tags and created.data.tags["team"] == "core"
    assert created.info.user_id == "ana" and created.info.start_time == 1_700_000_000_123


def test_a_run_cannot_be_created_in_a_deleted_experiment(tracking_uri):
    client = MlflowClient()
    experiment_id = client.create_experiment(f"deleted-{uuid.uuid4().hex[:6]}")
    client.create_run(experiment_id)
    client.delete_experiment(experiment_id)
    with pytest.raises(MlflowException, match="must be in the 'active' state"):
        client.create_run(experiment_id)
    client.restore_experiment(experiment_id)
    assert client.create_run(experiment_id).info.lifecycle_stage == "active"


def test_reads_after_writes_never_show_cached_run_data(tracking_uri):
    """The gateway caches runs' metrics / params / tags between reads; every write must show."""
    client = MlflowClient()
    experiment_id = client.create_experiment(f"cache-{uuid.uuid4().hex[:6]}")
    run_id = client.create_run(experiment_id).info.run_id
    client.log_metric(run_id, "acc", 0.5, step=0)
    assert client.get_run(run_id).data.metrics == {"acc": 0.5}
    assert client.search_runs([experiment_id])[0].data.metrics == {"acc": 0.5}
    for step in range(1, 4):
        client.log_metric(run_id, "acc", 0.5 + step / 10, step=step)
        client.set_tag(run_id, "round", str(step))
        assert client.get_run(run_id).data.metrics == {"acc": pytest.approx(0.5 + step / 10)}
        found = client.search_runs([experiment_id], filter_string=f"tags.round = '{step}'")
        assert [r.info.run_id for r in found] == [run_id] and found[0].data.tags["round"] == str(step)
    client.delete_tag(run_id, "round")
    assert "round" not in client.get_run(run_id).data.tags
