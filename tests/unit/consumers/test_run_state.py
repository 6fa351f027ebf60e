from trackstream.consumers.run_state import DELETED, FAILED, FINALIZING, FINISHED, KILLED, RUNNING, RunState


def run() -> RunState:
    return RunState("r1", "0")


def test_finalize_without_manifest_finishes_at_once():
    state = run().request_finalize([], end_time=10)
    assert (state.status, state.end_time, state.missing_artifacts) == (FINISHED, 10, ())


def test_finalize_with_uncommitted_artifacts_waits_in_finalizing():
    state = run().commit_artifact("a").request_finalize(["a", "b", "c"], end_time=10)
    assert state.status == FINALIZING
    assert state.missing_artifacts == ("b", "c")


def test_last_committed_artifact_finishes_the_run_in_any_order():
    state = run().request_finalize(["a", "b"], end_time=10)
    state = state.commit_artifact("b")
    assert state.status == FINALIZING
    state = state.commit_artifact("a")
    assert state.status == FINISHED and state.missing_artifacts == ()


def test_artifact_not_in_manifest_does_not_finish_the_run():
    state = run().request_finalize(["a"], end_time=10).commit_artifact("other")
    assert state.status == FINALIZING


def test_failed_while_finalizing_keeps_the_missing_paths():
    state = run().request_finalize(["a"], end_time=10).with_status(FAILED, 20)
    assert state.status == FAILED and state.missing_artifacts == ("a",)


def test_killed_is_recorded_and_a_finished_run_may_resume():
    assert run().with_status(KILLED, 5).status == KILLED
    assert run().request_finalize([], 5).with_status(RUNNING, None).status == RUNNING


def test_delete_and_restore_leave_status_alone():
    state = run().with_status(KILLED, 5).delete()
    assert state.lifecycle_stage == DELETED and state.is_deleted and state.status == KILLED
    assert not state.restore().is_deleted
