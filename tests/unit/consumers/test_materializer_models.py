"""Logged-model events through the materializer (pure: no services)."""

from trackstream.consumers.materializer import AggregateState, Materializer, RejectReason
from trackstream.consumers.model_state import ModelState
from tests.unit.consumers.events import EventLog
from tests.unit.consumers.test_materializer import EmptyStateReader, reasons

MODEL = "m-" + "a" * 32


def created(log: EventLog, **extra) -> None:
    fields = dict(model_id=MODEL, experiment_id="7", name="clf", model_type="", source_run_id="r1",
                  artifact_location=f"mlflow-artifacts:/7/models/{MODEL}/artifacts",
                  params=[{"key": "C", "value": "1.0"}], tags=[{"key": "team", "value": "a"}])
    fields.update(extra)
    log.add("logged_model_created", **fields)


def committed(log: EventLog, path: str) -> None:
    log.add("logged_model_artifact_committed", model_id=MODEL, path=path, size=3, sha256="ab", uri=f"file:///{path}")


def statuses(rows) -> list[str]:
    return [r[6] for r in rows.rows["logged_models"]]


def test_a_model_is_ready_only_after_its_files_were_committed():
    log = EventLog()
    created(log)
    committed(log, "MLmodel")
    committed(log, "model.pkl")
    log.add("logged_model_finalized", model_id=MODEL, status="READY", manifest=["MLmodel", "model.pkl"])
    rows = Materializer(EmptyStateReader()).process(log.messages)
    assert statuses(rows)[0] == "PENDING" and statuses(rows)[-1] == "READY"
    assert [r[1] for r in rows.rows["logged_model_artifacts"]] == ["MLmodel", "model.pkl"]
    assert rows.rows["logged_model_params"][0][:3] == (MODEL, "C", "1.0")
    assert rows.rows["logged_model_tags"][0][:4] == (MODEL, "team", "a", 0)


def test_a_finalize_naming_an_uncommitted_file_fails_the_model():
    log = EventLog()
    created(log)
    committed(log, "MLmodel")
    log.add("logged_model_finalized", model_id=MODEL, status="READY", manifest=["MLmodel", "model.pkl"])
    rows = Materializer(EmptyStateReader()).process(log.messages)
    last = rows.rows["logged_models"][-1]
    assert last[6] == "FAILED" and "model.pkl" in last[7]


def test_state_read_back_as_of_the_batch_decides_the_same_way():
    """A second batch sees the files committed in the first through the state reader."""
    state = AggregateState(model=ModelState(MODEL, "7", committed_artifacts=frozenset({"MLmodel"})))
    log = EventLog()
    log.add("logged_model_finalized", model_id=MODEL, status="READY", manifest=["MLmodel"])
    rows = Materializer(EmptyStateReader({MODEL: state})).process(log.messages)
    assert statuses(rows) == ["READY"]


def test_events_of_unknown_or_deleted_models_are_rejected():
    log = EventLog()
    log.add("logged_model_tags_set", model_id=MODEL, tags=[{"key": "k", "value": "v"}])
    created(log)
    log.add("logged_model_deleted", model_id=MODEL)
    log.add("logged_model_params_set", model_id=MODEL, params=[{"key": "D", "value": "2"}])
    rows = Materializer(EmptyStateReader()).process(log.messages)
    assert reasons(rows) == [RejectReason.UNKNOWN_MODEL, RejectReason.MODEL_DELETED]
    assert rows.rows["logged_models"][-1][8] == "deleted"


def test_model_params_are_immutable_and_metrics_and_run_links_become_rows():
    log = EventLog()
    created(log)
    log.add("logged_model_params_set", model_id=MODEL, params=[{"key": "C", "value": "2.0"}])
    log.add("logged_model_metrics_logged", model_id=MODEL, run_id="r1", metrics=[
        {"key": "acc", "value": 0.9, "timestamp_ms": 5, "step": 1, "dataset_name": "iris", "dataset_digest": "d1"}])
    log.run_created("r1")
    log.add("run_models_linked", run_id="r1", direction="OUTPUT", models=[{"model_id": MODEL, "step": 3}])
    rows = Materializer(EmptyStateReader()).process(log.messages)
    assert reasons(rows) == [RejectReason.PARAM_CONFLICT]
    assert rows.rows["logged_model_metrics"][0][:8] == (MODEL, "r1", "acc", 0.9, 1, 5, "iris", "d1")
    assert rows.rows["run_model_links"][0][:4] == ("r1", "OUTPUT", MODEL, 3)
