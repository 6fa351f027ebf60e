"""The LoggedModel state machine: READY only with every declared file committed."""

import pytest

from trackstream.consumers.model_state import DELETED, FAILED, PENDING, READY, ModelState, missing_files


def pending(*committed: str) -> ModelState:
    model = ModelState("m-1", "0", creation_timestamp_ms=10, last_updated_timestamp_ms=10)
    for path in committed:
        model = model.commit_artifact(path, 20)
    return model


def test_ready_when_every_manifest_file_was_committed():
    model = pending("MLmodel", "model.pkl").finalize(READY, ["MLmodel", "model.pkl"], 30)
    assert (model.status, model.status_message, model.last_updated_timestamp_ms) == (READY, "", 30)


def test_a_missing_file_makes_a_ready_request_fail_naming_it():
    model = pending("MLmodel").finalize(READY, ["MLmodel", "model.pkl", "conda.yaml"], 30)
    assert model.status == FAILED
    assert "model.pkl, conda.yaml" in model.status_message


def test_ready_with_an_empty_manifest_is_failed_not_ready():
    assert pending().finalize(READY, [], 30).status == FAILED


def test_failed_on_request_and_final_statuses_do_not_change():
    failed = pending("MLmodel").finalize(FAILED, [], 30)
    assert failed.status == FAILED
    assert failed.finalize(READY, ["MLmodel"], 40) == failed
    ready = pending("MLmodel").finalize(READY, ["MLmodel"], 30)
    assert ready.finalize(FAILED, [], 40) == ready


def test_pending_until_finalized_and_unknown_statuses_are_refused():
    assert pending("MLmodel", "model.pkl").status == PENDING
    with pytest.raises(ValueError, match="READY or FAILED"):
        pending().finalize("DONE", ["MLmodel"], 30)


def test_delete_keeps_the_status():
    deleted = pending("MLmodel").finalize(READY, ["MLmodel"], 30).delete(40)
    assert (deleted.status, deleted.lifecycle_stage, deleted.is_deleted) == (READY, DELETED, True)


def test_missing_files_keeps_manifest_order_once():
    assert missing_files(["b", "a", "b", "c"], frozenset({"c"})) == ("b", "a")
