import sys
import threading
from pathlib import Path

import pytest

import trackstream as ts
from trackstream.producer import fluent
from trackstream.producer.client import TrackingClient
from trackstream.schemas.experiment_ids import candidate_experiment_ids
from tests.unit.producer.test_client import FakeDirectory, FakeWriter, tags_of
from trackstream.config import Settings
from trackstream.errors import InvalidInput

ATTACHED = "a" * 32


@pytest.fixture
def writer(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(fluent, "_experiment_id", None)
    monkeypatch.delenv(fluent.EXPERIMENT_ID_ENV, raising=False)
    fake = FakeWriter()
    client = TrackingClient(Settings(home=tmp_path / "home", kafka_bootstrap="unused"), writer=fake, linger_s=3600,
                            experiments=FakeDirectory({"123": ("other", "active")}))
    fluent.set_client(client)
    yield fake
    fluent._stack.runs.clear()
    fluent.set_client(None)
    client.close()


def ended(writer: FakeWriter) -> dict[str, str]:
    """run id -> how it ended (FINISHED via finalize_requested, else the status)."""
    out = {f["run_id"]: "FINISHED" for f in writer.of("finalize_requested")}
    out.update({f["run_id"]: f["status"] for f in writer.of("run_status_changed")})
    return out


def test_context_manager_finishes_the_run(writer):
    with ts.start_run(run_name="base", tags={"k": "v"}) as run:
        assert ts.active_run() is run and run.info.run_id == run.run_id
        ts.log_param("lr", 0.1)
        ts.log_metric("loss", 0.5)
        ts.log_metrics({"acc": 0.9}, step=3)
        ts.set_tag("stage", "train")
    assert ts.active_run() is None
    created = writer.of("run_created")[0]
    assert created["run_id"] == run.run_id and created["experiment_id"] == "0"
    assert tags_of(created)["k"] == "v" and tags_of(created)["mlflow.runName"] == "base"
    assert ended(writer) == {run.run_id: "FINISHED"}
    assert sorted(writer.points()) == [(run.run_id, "acc", 3, 0.9), (run.run_id, "loss", 0, 0.5)]
    assert writer.types()[0] == "experiment_created" and writer.types()[-1] == "finalize_requested"


@pytest.mark.parametrize(("error", "status"), [(ValueError, "FAILED"), (KeyboardInterrupt, "KILLED")])
def test_context_manager_status_on_exception(writer, error, status):
    with pytest.raises(error):
        with ts.start_run() as run:
            raise error()
    assert ended(writer) == {run.run_id: status}
    assert ts.active_run() is None


def test_second_top_level_run_is_refused_while_one_is_active(writer):
    with ts.start_run() as run:
        with pytest.raises(InvalidInput, match=f"Run with UUID {run.run_id} is already active.*nested=True"):
            ts.start_run()
        assert ts.active_run() is run
    assert len(writer.of("run_created")) == 1


def test_nested_runs_record_their_parent_and_stack(writer):
    with ts.start_run() as parent:
        with ts.start_run(nested=True) as child:
            assert ts.active_run() is child
            with ts.start_run(nested=True) as grandchild:
                pass
            assert ts.active_run() is child
        assert ts.active_run() is parent
    by_id = {f["run_id"]: f for f in writer.of("run_created")}
    assert by_id[child.run_id]["parent_run_id"] == parent.run_id
    assert tags_of(by_id[child.run_id])["mlflow.parentRunId"] == parent.run_id
    assert by_id[grandchild.run_id]["parent_run_id"] == child.run_id
    assert by_id[parent.run_id]["parent_run_id"] is None
    assert list(ended(writer)) == [grandchild.run_id, child.run_id, parent.run_id]


def test_nested_needs_a_parent_and_parent_run_id_must_match(writer):
    with pytest.raises(InvalidInput, match="needs an active parent"):
        ts.start_run(nested=True)
    with ts.start_run():
        with pytest.raises(InvalidInput, match="does not match the specified parent_run_id"):
            ts.start_run(parent_run_id="b" * 32)
    child = ts.start_run(parent_run_id="c" * 32)
    assert writer.of("run_created")[-1]["parent_run_id"] == "c" * 32
    ts.end_run()
    assert ended(writer)[child.run_id] == "FINISHED"


def test_leaving_the_outer_block_ends_inner_runs_left_open(writer):
    with pytest.raises(RuntimeError):
        with ts.start_run() as outer:
            inner = ts.start_run(nested=True)
            raise RuntimeError
    assert ended(writer) == {inner.run_id: "FAILED", outer.run_id: "FAILED"}
    assert ts.active_run() is None


def test_end_run_ends_the_innermost_run_and_is_a_no_op_without_one(writer):
    ts.end_run()
    outer = ts.start_run()
    inner = ts.start_run(nested=True)
    ts.end_run("KILLED")
    assert ts.active_run() is outer
    ts.end_run()
    assert ended(writer) == {inner.run_id: "KILLED", outer.run_id: "FINISHED"}


def test_attach_sends_nothing_and_leaving_does_not_end_the_run(writer, monkeypatch):
    monkeypatch.setenv(fluent.EXPERIMENT_ID_ENV, "99")
    with ts.start_run(run_id=ATTACHED, attach=True) as run:
        assert writer.events == []
        assert run.attached and run.experiment_id == "99"
        ts.log_metric("loss", 1.0, step=5)
        ts.log_text("rank 3", "ranks/3.txt")
    assert writer.types() == ["artifact_committed", "metrics_logged"]
    assert writer.points() == [(ATTACHED, "loss", 5, 1.0)]
    uri = writer.of("artifact_committed")[0]["uri"]
    assert f"/99/{ATTACHED}/artifacts/ranks/3.txt" in uri


def test_attach_takes_the_experiment_argument_and_optional_tags(writer, monkeypatch):
    monkeypatch.setenv(fluent.EXPERIMENT_ID_ENV, "99")
    with ts.start_run(run_id=ATTACHED, experiment_id="5", run_name="rank-1", tags={"rank": 1}, attach=True) as run:
        assert run.experiment_id == "5"
    assert writer.of("tags_set") == [{"run_id": ATTACHED, "tags": [{"key": "rank", "value": "1"},
                                                                   {"key": "mlflow.runName", "value": "rank-1"}]}]
    monkeypatch.delenv(fluent.EXPERIMENT_ID_ENV)
    with ts.start_run(run_id=ATTACHED, attach=True) as run:
        assert run.experiment_id == "0"
    assert ended(writer) == {}


def test_start_run_with_a_run_id_resumes_it_as_mlflow_does(writer, monkeypatch):
    monkeypatch.setenv(fluent.EXPERIMENT_ID_ENV, "99")
    with ts.start_run(run_id=ATTACHED) as run:
        assert not run.attached and run.experiment_id == "99"
        assert writer.events == [("run_status_changed", {"run_id": ATTACHED, "status": "RUNNING",
                                                          "end_time_ms": None})]
        ts.log_metric("loss", 1.0, step=5)
    assert writer.types()[-1] == "finalize_requested"
    assert writer.of("finalize_requested")[0]["run_id"] == ATTACHED
    assert writer.points() == [(ATTACHED, "loss", 5, 1.0)]


def test_a_resumed_run_ends_with_the_status_end_run_gives(writer):
    ts.start_run(run_id=ATTACHED)
    ts.end_run("KILLED")
    assert [f["status"] for f in writer.of("run_status_changed")] == ["RUNNING", "KILLED"]
    assert ts.active_run() is None


def test_attach_needs_a_run_id(writer):
    with pytest.raises(InvalidInput, match="needs the run_id of the run to attach to"):
        ts.start_run(attach=True)


def test_set_experiment_is_used_by_new_runs_and_not_sent_again_once_the_server_has_it(writer):
    exp = ts.set_experiment("vision")
    assert exp == candidate_experiment_ids("vision")[0]
    ts.get_client().experiments.experiments[exp] = ("vision", "active")  # materialized, the server knows it
    assert ts.set_experiment("vision") == exp
    with ts.start_run() as run:
        pass
    assert [f["name"] for f in writer.of("experiment_created")] == ["vision"]
    assert writer.of("run_created")[0]["experiment_id"] == exp == run.experiment_id
    with ts.start_run(experiment_id="123") as other:
        with ts.start_run(nested=True) as child:
            pass
    assert other.experiment_id == child.experiment_id == "123"


def test_logging_without_an_active_run_starts_one(writer):
    ts.log_metric("loss", 2.0)
    run = ts.active_run()
    assert run is not None and writer.of("run_created")[0]["run_id"] == run.run_id
    assert ts.flush(1) == 0
    assert writer.points() == [(run.run_id, "loss", 0, 2.0)]
    ts.end_run()


def test_active_runs_are_per_thread(writer):
    seen = []
    with ts.start_run():
        thread = threading.Thread(target=lambda: seen.append(ts.active_run()))
        thread.start()
        thread.join()
    assert seen == [None]


def test_runs_left_open_end_at_exit_failed_after_an_uncaught_exception(writer, monkeypatch):
    first = ts.start_run()
    fluent._end_runs_at_exit()
    second = ts.start_run()
    monkeypatch.setattr(sys, "last_value", ZeroDivisionError(), raising=False)
    fluent._end_runs_at_exit()
    assert ended(writer) == {first.run_id: "FINISHED", second.run_id: "FAILED"}


def test_switching_clients_with_an_active_run_is_refused(writer):
    with ts.start_run():
        with pytest.raises(InvalidInput, match="cannot switch clients"):
            ts.set_client(None)


def test_log_figure_names_matplotlib_when_it_is_missing(writer, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with ts.start_run():
        with pytest.raises(ImportError, match="matplotlib"):
            ts.log_figure(object(), "plot.png")


def test_package_exports_the_fluent_api():
    assert ts.start_run is fluent.start_run and ts.log_metric is fluent.log_metric
    assert ts.TrackingClient is TrackingClient
    assert set(fluent.__all__) <= set(ts.__all__) <= set(dir(ts))
    with pytest.raises(AttributeError):
        ts.does_not_exist


def test_log_input_records_a_dataset_of_the_active_run(writer):
    with ts.start_run() as run:
        item = ts.log_input(name="iris", digest="abc", source="s3://b/iris.csv", context="training")
        ts.log_input(name="iris", digest="abc", context="evaluation")  # the first input of a dataset wins downstream
    sent = writer.of("inputs_logged")
    assert [f["run_id"] for f in sent] == [run.run_id, run.run_id]
    assert sent[0]["datasets"] == [item.to_record()]
    assert sent[0]["datasets"][0]["tags"] == [{"key": "mlflow.data.context", "value": "training"}]
    with pytest.raises(InvalidInput, match="dataset digest exceeds the maximum length of 36"):
        with ts.start_run():
            ts.log_input(name="x", digest="d" * 37)
def test_set_experiment_after_a_rename_creates_a_new_experiment_under_the_old_name(writer):
    first, second = candidate_experiment_ids("old")[:2]
    ts.get_client().experiments = FakeDirectory({first: ("new", "active")})  # the server renamed "old"
    assert ts.set_experiment("old") == second
    assert writer.of("experiment_created")[0]["experiment_id"] == second
    with ts.start_run() as run:
        pass
    assert run.experiment_id == second


def test_set_experiment_of_an_existing_name_sends_nothing(writer):
    ts.get_client().experiments = FakeDirectory({"17": ("there", "active")})
    assert ts.set_experiment("there") == "17"
    assert writer.of("experiment_created") == []


def test_start_run_in_an_experiment_the_server_does_not_know_raises_and_starts_nothing(writer):
    with pytest.raises(InvalidInput, match="Cannot create a run in experiment 999: no experiment with id=999"):
        ts.start_run(experiment_id="999")
    assert ts.active_run() is None and writer.of("run_created") == []
