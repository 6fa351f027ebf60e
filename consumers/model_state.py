"""The LoggedModel lifecycle as an explicit state machine (pure; no I/O).

PENDING ──finalized(READY, manifest) with every manifest path committed──► READY
   │     ──finalized(READY, manifest) with a path not committed──────────► FAILED ("missing: ...")
   └─────finalized(FAILED)─────────────────────────────────────────────────► FAILED
READY and FAILED are final for the status; a second finalize is ignored (MLflow's client finalizes
once). lifecycle_stage (active / deleted) is orthogonal to status. A model is never READY unless the
files it declared landed, were verified (size and sha256) and were committed before the finalize
event in the log, which is the order the gateway and the SDK write them in.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

PENDING = "PENDING"
READY = "READY"
FAILED = "FAILED"
ACTIVE = "active"
DELETED = "deleted"
MLFLOW_STATUS = {PENDING: "LOGGED_MODEL_PENDING", READY: "LOGGED_MODEL_READY", FAILED: "LOGGED_MODEL_UPLOAD_FAILED"}


def missing_files(manifest: list[str] | tuple[str, ...], committed: frozenset[str]) -> tuple[str, ...]:
    """Manifest paths without a committed artifact, in manifest order."""
    return tuple(p for p in dict.fromkeys(manifest) if p not in committed)


@dataclass(frozen=True)
class ModelState:
    model_id: str
    experiment_id: str
    name: str = ""
    model_type: str = ""
    source_run_id: str = ""
    artifact_location: str = ""
    status: str = PENDING
    status_message: str = ""
    lifecycle_stage: str = ACTIVE
    creation_timestamp_ms: int = 0
    last_updated_timestamp_ms: int = 0
    committed_artifacts: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_deleted(self) -> bool:
        return self.lifecycle_stage == DELETED

    def touched(self, at_ms: int) -> "ModelState":
        return replace(self, last_updated_timestamp_ms=max(at_ms, self.last_updated_timestamp_ms))

    def commit_artifact(self, path: str, at_ms: int) -> "ModelState":
        return replace(self.touched(at_ms), committed_artifacts=self.committed_artifacts | {path})

    def finalize(self, status: str, manifest: list[str] | tuple[str, ...], at_ms: int) -> "ModelState":
        """READY only when every manifest path is committed; FAILED names what is missing."""
        if self.status != PENDING:
            return self
        if status == FAILED:
            return replace(self.touched(at_ms), status=FAILED, status_message="the client reported the upload failed")
        if status != READY:
            raise ValueError(f"a model can be finalized as READY or FAILED, not {status!r}")
        if not manifest:
            return replace(self.touched(at_ms), status=FAILED,
                           status_message="READY requested with no files declared: a model needs its files")
        missing = missing_files(manifest, self.committed_artifacts)
        if missing:
            return replace(self.touched(at_ms), status=FAILED,
                           status_message="READY requested but these files were never committed: " + ", ".join(missing))
        return replace(self.touched(at_ms), status=READY, status_message="")

    def delete(self, at_ms: int) -> "ModelState":
        return replace(self.touched(at_ms), lifecycle_stage=DELETED)
