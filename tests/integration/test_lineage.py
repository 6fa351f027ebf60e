"""Lineage end to end against a real server (real broker, embedded ClickHouse): dataset inputs
through the real mlflow client's log_input and datasets.* searches, the SDK's log_inputs, as-of
reads and replay; and the environment artifact and tags the SDK records at run start."""

from __future__ import annotations

import hashlib
import time
import uuid

import numpy as np
import pytest

from tests.integration.harness import mlflow_tracking_server, wait_until
from trackstream.producer import environment as env
from trackstream.producer.client import TrackingClient
from tests.unit.producer.test_environment import installed_by_metadata, parse_requirements

mlflow = pytest.importorskip("mlflow")
pd = pytest.importorskip("pandas")
from mlflow import MlflowClient  # noqa: E402


@pytest.fixture(scope="module")
def server(kafka_bootstrap, tmp_path_factory):
    with mlflow_tracking_server(kafka_bootstrap, tmp_path_factory.mktemp("lineage"), "ln") as handle:
        yield handle


@pytest.fixture(scope="module")
def logged(server):
    """Two runs through the unmodified mlflow client: A trains on a numpy dataset (logged twice, the
    second time as evaluation, which MLflow ignores) and evaluates on a pandas one; B evaluates and
    tests on a dataset entity with every optional field (mlflow.data needs scipy to infer schemas)."""
    experiment_id = mlflow.set_experiment(f"datasets-{uuid.uuid4().hex[:6]}").experiment_id
    train = mlflow.data.from_numpy(np.arange(20.0).reshape(10, 2), source="s3://bucket/train.npy", name="train-np")
    evaluation = mlflow.data.from_pandas(pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0, 1, 0]}),
                                         source="/data/eval.csv", name="eval-df", targets="y")
    with mlflow.start_run(run_name="a") as run_a:
        mlflow.log_input(train, context="training", tags={"split": "v1"})
        mlflow.log_input(evaluation, context="evaluation")
        mlflow.log_input(train, context="evaluation")
    with mlflow.start_run(run_name="b") as run_b:
        mlflow.log_input(evaluation, context="evaluation")
        MlflowClient().log_inputs(run_b.info.run_id, [mlflow.entities.DatasetInput(
            FULL, [mlflow.entities.InputTag("mlflow.data.context", "testing")])])
    return experiment_id, run_a.info.run_id, run_b.info.run_id, train, evaluation


FULL = mlflow.entities.Dataset(name="holdout", digest="5c4e9a", source_type="code", source='{"tag": "v2"}',
                               schema='{"mlflow_colspec": [{"type": "double", "name": "x"}]}',
                               profile='{"num_rows": 1}')


def names(runs) -> list[str]:
    return sorted(runs["tags.mlflow.runName"]) if len(runs) else []


def test_get_run_round_trips_every_field_and_keeps_the_first_input_of_a_dataset(logged):
    _, run_a, _, train, evaluation = logged
    inputs = MlflowClient().get_run(run_a).inputs.dataset_inputs
    assert [i.dataset for i in inputs] == [train._to_mlflow_entity(), evaluation._to_mlflow_entity()]
    assert inputs[0].dataset.profile and inputs[1].dataset.profile  # real JSON from mlflow.data, not empty
    assert [{t.key: t.value for t in i.tags} for i in inputs] == [
        {"mlflow.data.context": "training", "split": "v1"}, {"mlflow.data.context": "evaluation"}]


@pytest.mark.parametrize("filter_string, expected", [
    ("datasets.name = 'train-np'", ["a"]),
    ("datasets.context = 'training'", ["a"]),
    ("datasets.context = 'evaluation'", ["a", "b"]),
    ("dataset.name LIKE 'eval%' AND datasets.context = 'training'", ["a"]),
    ("datasets.name != 'eval-df'", ["a", "b"]),
    ("datasets.name != 'holdout'", ["a", "b"]),
    ("datasets.name != 'holdout' AND datasets.context = 'training'", ["a"]),
    ("datasets.name ILIKE 'TRAIN%'", ["a"]),
    ("datasets.context IN ('testing', 'training')", ["a", "b"]),
    ("datasets.context IN ('training')", ["a"]),
    ("datasets.name NOT IN ('train-np')", ["a", "b"]),
    ("datasets.name = 'nothing'", []),
])
def test_search_runs_with_dataset_filters(logged, filter_string, expected):
    experiment_id = logged[0]
    assert names(mlflow.search_runs([experiment_id], filter_string=filter_string)) == expected


def test_optional_schema_and_profile_round_trip(logged):
    inputs = MlflowClient().get_run(logged[2]).inputs.dataset_inputs
    assert [i.dataset for i in inputs] == [logged[4]._to_mlflow_entity(), FULL]


def test_search_by_digest_returns_runs_with_their_inputs(logged):
    experiment_id, run_a, _, train, _ = logged
    found = MlflowClient().search_runs([experiment_id], f"datasets.digest = '{train.digest}'")
    assert [r.info.run_id for r in found] == [run_a]
    assert [i.dataset.name for i in found[0].inputs.dataset_inputs] == ["train-np", "eval-df"]


def test_bad_dataset_filters_and_inputs_are_refused_like_mlflow(logged, server):
    experiment_id, run_a, _, _, _ = logged
    with pytest.raises(mlflow.exceptions.MlflowException, match="Invalid dataset key 'source'"):
        mlflow.search_runs([experiment_id], filter_string="datasets.source = 'x'")
    too_long = mlflow.entities.Dataset(name="n" * 501, digest="d", source_type="local", source="{}")
    with pytest.raises(mlflow.exceptions.MlflowException, match="name exceeds the maximum length of 500"):
        MlflowClient().log_inputs(run_a, [mlflow.entities.DatasetInput(too_long)])
    with mlflow.start_run() as doomed:
        pass
    MlflowClient().delete_run(doomed.info.run_id)
    with pytest.raises(mlflow.exceptions.MlflowException, match="must be in the 'active' state"):
        MlflowClient().log_inputs(doomed.info.run_id, [mlflow.entities.DatasetInput(FULL)])


def test_sdk_log_input_as_of_reads_and_replay_cover_datasets(server, logged):
    client = TrackingClient(server.settings)
    run_id = client.create_run("0", run_name="sdk")
    client.log_inputs(run_id, [{"name": "features", "digest": "f00d", "source_type": "delta",
                                "source": "dbfs:/features", "profile": '{"rows": 7}'}], context="training")
    assert client.flush(30) == 0
    wait_until(lambda: server.reader.run(run_id)["dataset_inputs"], 60, "the first input")
    time.sleep(1.2)
    cutoff = int(time.time() * 1000)
    time.sleep(1.2)
    client.log_inputs(run_id, [{"name": "labels", "digest": "beef", "source": "s3://labels"}], context="evaluation")
    assert client.flush(30) == 0
    client.close()
    wait_until(lambda: len(server.reader.run(run_id)["dataset_inputs"]) == 2, 60, "the second input")

    then = server.reader.run(run_id, as_of_ms=cutoff)["dataset_inputs"]
    assert [i["dataset"]["name"] for i in then] == ["features"]
    assert then[0]["dataset"] == {"name": "features", "digest": "f00d", "source_type": "delta",
                                  "source": "dbfs:/features", "profile": '{"rows": 7}'}
    got = MlflowClient().get_run(run_id).inputs.dataset_inputs
    assert [(i.dataset.name, i.dataset.source_type, i.tags[0].value) for i in got] == [
        ("features", "delta", "training"), ("labels", "unknown", "evaluation")]

    result = server.cli("replay", "--database", "rebuilt_datasets")
    line = next(line for line in result.stdout.splitlines() if line.startswith("dataset_inputs "))
    assert line.split()[-1] == "equal", result.stdout
    assert server.sql("SELECT count() FROM rebuilt_datasets.dataset_inputs")[0][0] == 6  # 2 + 2 + 2


def test_runs_get_their_environment_once_per_process_and_a_tag_pointing_at_it(server, tmp_path, monkeypatch):
    monkeypatch.setattr(env, "PROCESS_MEMORY", env.EnvironmentMemory())
    monkeypatch.delenv(env.DISABLE_ENV, raising=False)
    client = TrackingClient(server.settings)
    experiment_id = client.create_experiment(f"env-{uuid.uuid4().hex[:6]}")
    first = client.create_run(experiment_id, run_name="first")
    client.set_terminated(first)
    second = client.create_run(experiment_id, run_name="second")
    client.set_terminated(second)
    assert client.flush(30) == 0
    client.close()

    mlflow_client = MlflowClient()
    wait_until(lambda: mlflow_client.get_run(second).info.status == "FINISHED", 60, "both runs to finish")
    tags = [mlflow_client.get_run(r).data.tags for r in (first, second)]
    assert [t[env.SOURCE_RUN_TAG] for t in tags] == [first, first]
    assert tags[0][env.SHA256_TAG] == tags[1][env.SHA256_TAG]
    assert [f.path for f in mlflow_client.list_artifacts(first, "environment")] == [env.REQUIREMENTS_PATH]
    assert not mlflow_client.list_artifacts(second, "environment")
    local = mlflow.artifacts.download_artifacts(run_id=first, artifact_path=env.REQUIREMENTS_PATH,
                                                dst_path=str(tmp_path))
    data = open(local, "rb").read()
    assert hashlib.sha256(data).hexdigest() == tags[0][env.SHA256_TAG]
    assert parse_requirements(data.decode()) == installed_by_metadata()

