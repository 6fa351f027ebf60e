"""The run lifecycle as an explicit state machine (pure; no I/O).

RUNNING ──finalize_requested(manifest)──► FINALIZING ──last listed artifact committed──► FINISHED
   │            (manifest all committed already) ─────────────────────────────────────► FINISHED
   ├──run_status_changed(FINISHED | FAILED | KILLED)──► that status
FINALIZING ──finalize deadline passed (a run_status_changed FAILED)──► FAILED, missing paths kept
(that FAILED, written by the finalize timer, changes nothing if the run is no longer FINALIZING)
Any status may go back to RUNNING (MLflow allows resuming a finished run).
lifecycle_stage (active / deleted) is orthogonal to status.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

RUNNING = "RUNNING"
SCHEDULED = "SCHEDULED"
FINALIZING = "FINALIZING"
FINISHED = "FINISHED"
FAILED = "FAILED"
KILLED = "KILLED"
TERMINAL_STATUSES = frozenset({FINISHED, FAILED, KILLED})
ACTIVE = "active"
FINALIZER_WRITER_PREFIX = "trackstream-finalizer"
"""Writer id prefix of the finalize timer's FAILED events (one writer per event)."""
DELETED = "deleted"


@dataclass(frozen=True)
class RunState:
    run_id: str
    experiment_id: str
    run_name: str = ""
    user_id: str = ""
    source_name: str = ""
    parent_run_id: str = ""
    status: str = RUNNING
    start_time: int = 0
    end_time: int | None = None
    lifecycle_stage: str = ACTIVE
    artifact_uri: str = ""
    missing_artifacts: tuple[str, ...] = ()
    committed_artifacts: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_deleted(self) -> bool:
        return self.lifecycle_stage == DELETED

    def with_status(self, status: str, end_time: int | None) -> "RunState":
        if status == FAILED and self.status == FINALIZING:
            return replace(self, status=FAILED, end_time=end_time)
        return replace(self, status=status, end_time=end_time, missing_artifacts=())

    def fail_finalize_deadline(self, end_time: int) -> "RunState":
        """The finalize timer's FAILED. The timer decides from materialized state, which may lag
        behind the log; in log order the run may have finished (or been resumed) since, and then
        the decision is moot."""
        if self.status != FINALIZING:
            return self
        return self.with_status(FAILED, end_time)

    def request_finalize(self, manifest_paths: list[str], end_time: int) -> "RunState":
        missing = tuple(sorted(set(manifest_paths) - self.committed_artifacts))
        if missing:
            return replace(self, status=FINALIZING, end_time=end_time, missing_artifacts=missing)
        return replace(self, status=FINISHED, end_time=end_time, missing_artifacts=())

    def commit_artifact(self, path: str) -> "RunState":
        committed = self.committed_artifacts | {path}
        if self.status != FINALIZING:
            return replace(self, committed_artifacts=committed)
        missing = tuple(p for p in self.missing_artifacts if p != path)
        status = FINISHED if not missing else FINALIZING
        return replace(self, committed_artifacts=committed, missing_artifacts=missing, status=status)

    def delete(self) -> "RunState":
        return replace(self, lifecycle_stage=DELETED)

    def restore(self) -> "RunState":
        return replace(self, lifecycle_stage=ACTIVE)
