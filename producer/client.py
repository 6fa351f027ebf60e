"""TrackingClient: the explicit SDK object; every operation names its run by id.

Writes are events appended to Kafka. Metric points are buffered and sent as columnar batches
(``metrics_logged``), so ``log_metric`` costs about a microsecond and never waits on the
network; a background thread ships partial buffers every ``linger_s``.

If the local event spool refuses points the flusher drained (the disk is full), the points go back
to the buffer in order and are retried; each failure counts in ``failed_sends``, warns once per
cause (``SpoolWarning``), and ``flush()`` / ``close()`` raise ``MetricsNotSpooled`` while points
are still unrecorded, so a full disk never loses metrics silently.

Artifacts are stored under ``<experiment_id>/<run_id>/artifacts/`` of the artifact store, so the
client needs each run's experiment id: it remembers the runs it created, and ``attach_run``
tells it about runs created by another process.
"""

from __future__ import annotations

import atexit
import logging
import os
import tempfile
import threading
import time
import uuid
import warnings
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from trackstream.producer import validation as v
from trackstream.producer.artifacts import (
    ArtifactRecord,
    ArtifactStore,
    ArtifactUploader,
    figure_to_png,
    model_artifact_key,
    open_artifact_store,
    validate_artifact_path,
    write_temp_json,
    write_temp_text,
)
from trackstream.producer import environment as env
from trackstream.producer.inputs import MAX_DATASETS_PER_BATCH, DatasetInput, dataset_input, dedupe_dataset_inputs
from trackstream.producer.experiments import (ExperimentDirectory, ServerExperimentDirectory, require_run_experiment,
                                              resolve_experiment)
from trackstream.producer.kafka_writer import EventWriter, SpoolWarning, close_in_multiprocessing_child
from trackstream.producer.metric_buffer import MetricBuffer
from trackstream.producer.provenance import collect_provenance, provenance_enabled
from trackstream.config import Settings
from trackstream.errors import InvalidInput, MetricsNotSpooled, ServiceUnavailable
from trackstream.schemas.experiment_ids import DEFAULT_EXPERIMENT_ID, DEFAULT_EXPERIMENT_NAME, candidate_experiment_ids

RUN_STATUSES = ("FINISHED", "FAILED", "KILLED", "RUNNING", "SCHEDULED")

log = logging.getLogger(__name__)

_validate_metric = v.validate_metric
_time_ns = time.time_ns


def now_ms() -> int:
    return _time_ns() // 1_000_000


class TrackingClient:
    def __init__(self, settings: Settings | None = None, *, writer: EventWriter | None = None,
                 linger_s: float = 0.2, max_points_per_batch: int = 50_000,
                 secret_policy: "v.SecretPolicy" = v.SecretPolicy.WARN,
                 artifact_store: ArtifactStore | None = None, capture_environment: bool = True,
                 experiments: ExperimentDirectory | None = None) -> None:
        """``artifact_store`` defaults to the store ``settings.artifact_store`` names (the local one at
        ``settings.artifact_root`` unless it is an S3 location), opened on the first artifact upload.
        ``capture_environment``: record each new run's installed packages (see ``create_run``).
        ``experiments`` (which experiment a name means) defaults to the server at ``settings.server_url``."""
        self.settings = settings or Settings.from_env()
        self.experiments = experiments or ServerExperimentDirectory(self.settings.server_url)
        self._warned_offline = False
        self._sent_experiments: set[str] = set()  # ids whose experiment_created this client sent
        self._owns_writer = writer is None
        self.writer = writer or EventWriter(self.settings.kafka_bootstrap, self.settings.topic,
                                            producer_config=self.settings.kafka_security.librdkafka_config())
        self.secret_policy = secret_policy
        self._metrics = MetricBuffer(max_points_per_batch)
        self._add_point = self._metrics.add
        self._send_lock = threading.Lock()
        self._artifact_store = artifact_store
        self._uploader: ArtifactUploader | None = None
        self._model_uploader: ArtifactUploader | None = None
        self._uploader_lock = threading.Lock()
        self._run_experiments: dict[str, str] = {}
        self.capture_environment = capture_environment
        self._environment_jobs: dict[str, threading.Thread] = {}
        self.failed_sends = 0
        """How many times the spool refused drained metric points (they were kept and retried)."""
        self._warned_causes: set[str] = set()
        self._closed = threading.Event()
        self._linger_s = linger_s
        self._start_flusher()
        atexit.register(self.close)
        _live_clients.add(self)

    def _start_flusher(self) -> None:
        self._flusher = threading.Thread(target=self._flush_periodically, args=(self._linger_s,),
                                         name="trackstream-metric-flusher", daemon=True)
        self._flusher.start()

    def _after_fork_in_child(self) -> None:
        """In a forked child: the buffered points are the parent's to send (dropping them here is
        what keeps them from arriving twice); fresh locks, buffer and flusher thread. The writer
        renews its own identity and spool (``producer/kafka_writer.py``)."""
        self._metrics = MetricBuffer(self._metrics.max_points)
        self._add_point = self._metrics.add
        self._send_lock = threading.Lock()
        self._uploader = None
        self._uploader_lock = threading.Lock()
        self._warned_causes = set()
        self.failed_sends = 0
        self._environment_jobs = {}  # the parent's recording threads do not exist here
        if not self._closed.is_set():
            self._start_flusher()
            close_in_multiprocessing_child(self, self.close, exitpriority=10)

    # experiments ---------------------------------------------------------------------------
    def create_experiment(self, name: str, artifact_location: str = "",
                          tags: Mapping[str, str] | None = None) -> str:
        """The id of the experiment called ``name``, created (with ``tags``) if there is none.

        The id follows the rule of ``schemas/experiment_ids.py``, with what exists asked of the
        tracking server: a name freed by a rename gets a new experiment, a deleted one is refused
        (``InvalidInput``). With no server answering, the name's first candidate id is used and
        ``experiment_created`` is sent (a no-op downstream if that experiment exists)."""
        name = v.validate_experiment_name(name)
        try:
            experiment_id, new = resolve_experiment(name, self.experiments)
        except ServiceUnavailable as exc:
            self._warn_offline(exc)
            experiment_id, new = candidate_experiment_ids(name)[0], True
        if not new:
            return experiment_id
        self.writer.append("experiment_created", {
            "experiment_id": experiment_id, "name": name, "artifact_location": artifact_location,
            "tags": [{"key": v.validate_key(k, "experiment tag"), "value": v.validate_experiment_tag_value(k, val)}
                     for k, val in (tags or {}).items()],
        })
        self._sent_experiments.add(experiment_id)
        return experiment_id

    def _check_run_experiment(self, experiment_id: str) -> None:
        """MLflow's runs/create check, asked of the tracking server: ``InvalidInput`` when it reports
        the experiment unknown or deleted; with no server answering, the run is created unchecked."""
        try:
            stage = self.experiments.stage_of(experiment_id)
        except ServiceUnavailable as exc:
            self._warn_offline(exc)
            return
        require_run_experiment(experiment_id, stage, experiment_id in self._sent_experiments)

    def _warn_offline(self, exc: ServiceUnavailable) -> None:
        """Once per client: what working without a tracking server gives up."""
        if not self._warned_offline:
            self._warned_offline = True
            log.warning("%s; until it does, experiment ids come from names alone (a renamed experiment's old "
                        "name then still means that experiment) and runs are created without checking that "
                        "their experiment exists and is active", exc)

    # runs ----------------------------------------------------------------------------------
    def create_run(self, experiment_id: str = DEFAULT_EXPERIMENT_ID, run_name: str = "",
                   tags: Mapping[str, Any] | None = None, parent_run_id: str | None = None,
                   user_id: str = "", source_name: str = "", start_time_ms: int | None = None,
                   provenance: bool = True, environment: bool | None = None) -> str:
        """Create a run and return its id.

        As in MLflow, the experiment must exist and be active: the tracking server is asked, and
        ``InvalidInput`` names the experiment it reports unknown or deleted (an experiment this
        client created counts even before the server has it). With no server answering, the run
        is created unchecked and the client warns once.

        With ``provenance`` (and unless ``TRACKSTREAM_DISABLE_PROVENANCE`` is set) the run gets
        the tags of :func:`producer.provenance.collect_provenance`; ``tags`` win over them, and
        ``user_id`` / ``source_name`` default to the detected user and source file. A
        ``parent_run_id`` is also recorded as the ``mlflow.parentRunId`` tag, as MLflow does.

        ``environment`` records the installed packages as the artifact
        ``environment/requirements.txt`` (and ``environment/conda.yaml`` in a conda environment)
        with sha256 tags, on a background thread; ending the run or ``flush`` waits for it (see
        :mod:`producer.environment`). By default it follows ``provenance``, unless the client's
        ``capture_environment`` is off or ``TRACKSTREAM_DISABLE_ENVIRONMENT`` is set.
        """
        self._check_run_experiment(experiment_id)
        run_id = uuid.uuid4().hex
        detected = collect_provenance() if provenance else {}
        merged: dict[Any, Any] = {**detected, **(tags or {})}
        run_name = run_name or str(merged.get("mlflow.runName", ""))
        if run_name:
            merged["mlflow.runName"] = run_name
        if parent_run_id:
            merged["mlflow.parentRunId"] = v.validate_run_id(parent_run_id)
        self.writer.append("run_created", {
            "run_id": run_id, "experiment_id": experiment_id, "run_name": run_name,
            "user_id": user_id or detected.get("mlflow.user", ""),
            "source_name": source_name or detected.get("mlflow.source.name", ""),
            "parent_run_id": parent_run_id,
            "start_time_ms": start_time_ms if start_time_ms is not None else now_ms(),
            "tags": [self._tag(k, val) for k, val in merged.items()],
        })
        self._run_experiments[run_id] = experiment_id
        if environment is None:
            environment = (provenance and provenance_enabled() and self.capture_environment
                           and env.environment_enabled())
        if environment:
            job = threading.Thread(target=self._record_environment, args=(run_id,),
                                   name="trackstream-environment", daemon=True)
            self._environment_jobs[run_id] = job
            job.start()
        return run_id

    def _record_environment(self, run_id: str) -> None:
        """Capture, upload what this process has not stored yet, tag. Failures only warn: a run
        must not fail because its environment could not be recorded."""
        try:
            files = env.capture_environment()
            store = f"{self.settings.artifact_store}|{self.settings.artifact_root}"
            holder = env.PROCESS_MEMORY.holder(store, files)
            if holder is None:
                for path, data in files.files:
                    self._upload_temp(run_id, write_temp_text(data.decode()), path)
                env.PROCESS_MEMORY.remember(store, files, run_id)
            self.set_tags(run_id, files.tags(holder or run_id))
        except Exception as exc:  # noqa: BLE001 - reported, never raised into training
            warnings.warn(f"trackstream: the environment of run {run_id} was not recorded: "
                          f"{type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=1)

    def wait_for_environment(self, run_id: str | None = None, timeout: float = 60.0) -> None:
        """Wait until the environment of ``run_id`` (of every run when None) is recorded."""
        for rid in [run_id] if run_id is not None else list(self._environment_jobs):
            job = self._environment_jobs.get(rid)
            if job is not None:
                job.join(timeout)
                if not job.is_alive():
                    self._environment_jobs.pop(rid, None)

    def attach_run(self, run_id: str, experiment_id: str = DEFAULT_EXPERIMENT_ID) -> None:
        """Tell this client about a run created elsewhere (another process, an earlier session).

        Sends nothing: metrics, params and tags never needed it; artifacts need the experiment
        id for their storage key. Each process logs with its own writer id and sequence.
        """
        self._run_experiments[v.validate_run_id(run_id)] = experiment_id

    def resume_run(self, run_id: str, experiment_id: str = DEFAULT_EXPERIMENT_ID) -> None:
        """Continue a run as MLflow's ``start_run(run_id=...)`` does: it goes back to RUNNING (its
        end time cleared) and ``set_terminated`` ends it again. ``attach_run`` is the multi-writer
        alternative that leaves the run's status alone."""
        self.attach_run(run_id, experiment_id)
        self.writer.append("run_status_changed", {"run_id": run_id, "status": "RUNNING", "end_time_ms": None})

    def experiment_of(self, run_id: str) -> str:
        try:
            return self._run_experiments[run_id]
        except KeyError:
            raise InvalidInput(
                f"run {run_id!r} was not created by this client, so its experiment id is unknown; "
                "call attach_run(run_id, experiment_id) first"
            ) from None

    def log_param(self, run_id: str, key: str, value: Any) -> None:
        self.log_params(run_id, {key: value})

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        checked = []
        for key, value in params.items():
            key = v.validate_key(key, "param")
            value = v.apply_secret_policy(key, v.validate_param_value(key, value), self.secret_policy, stacklevel=4)
            checked.append({"key": key, "value": value})
        if checked:
            self.writer.append("params_set", {"run_id": run_id, "params": checked})

    def log_metric(self, run_id: str, key: str, value: float, step: int = 0,
                   timestamp_ms: int | None = None) -> None:
        """Buffer one point (validated first); hot path, so globals are pre-bound and nothing is sent inline
        except a full batch."""
        value, step, timestamp_ms = _validate_metric(
            key, value, step, _time_ns() // 1_000_000 if timestamp_ms is None else timestamp_ms)
        if self._add_point(run_id, key, value, step, timestamp_ms):
            self._send_metrics(run_id)

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0,
                    timestamp_ms: int | None = None) -> None:
        """All points are validated before any is buffered."""
        ts = now_ms() if timestamp_ms is None else timestamp_ms
        points = [(key, *_validate_metric(key, value, step, ts)) for key, value in metrics.items()]
        full = False
        for key, value, checked_step, checked_ts in points:
            full |= self._add_point(run_id, key, value, checked_step, checked_ts)
        if full:
            self._send_metrics(run_id)

    def log_metric_arrays(self, run_id: str, key: str, values: Any, steps: Any,
                          timestamps_ms: Any | None = None) -> None:
        """Bulk path: numpy arrays of one metric's points, validated vectorised."""
        values = np.asarray(values)
        stamps = np.full(len(values), now_ms(), dtype=np.int64) if timestamps_ms is None else np.asarray(timestamps_ms)
        key, values, steps, stamps = v.validate_metric_arrays(key, values, steps, stamps)
        self._metrics.add_arrays(run_id, key, values, steps, stamps)
        self._send_metrics(run_id)

    def set_tag(self, run_id: str, key: str, value: Any) -> None:
        self.set_tags(run_id, {key: value})

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        tag_list = [self._tag(k, val) for k, val in tags.items()]
        if tag_list:
            self.writer.append("tags_set", {"run_id": run_id, "tags": tag_list})

    def log_inputs(self, run_id: str, datasets: Iterable[Any], context: str | None = None) -> list[DatasetInput]:
        """Record datasets the run used (MLflow's ``log_inputs``). Items are DatasetInput objects or
        anything :func:`producer.inputs.dataset_input` takes (an ``mlflow.data`` dataset, a mapping),
        the latter tagged with ``context``. The first per (name, digest) is sent; returns those."""
        items = dedupe_dataset_inputs(d if isinstance(d, DatasetInput) else dataset_input(d, context)
                                      for d in datasets)
        if len(items) > MAX_DATASETS_PER_BATCH:
            raise InvalidInput(f"at most {MAX_DATASETS_PER_BATCH} datasets per log_inputs call, got {len(items)}")
        if items:
            self.writer.append("inputs_logged", {"run_id": v.validate_run_id(run_id),
                                                 "datasets": [d.to_record() for d in items]})
        return items

    def delete_tag(self, run_id: str, key: str) -> None:
        self.writer.append("tag_deleted", {"run_id": run_id, "key": v.validate_key(key, "tag")})

    def set_terminated(self, run_id: str, status: str = "FINISHED", end_time_ms: int | None = None,
                       manifest: Iterable[Mapping[str, Any]] | None = None) -> None:
        """End a run. FINISHED goes through finalize-requested so the consumer holds the run in
        FINALIZING until every artifact in the manifest is committed; FAILED / KILLED are recorded as such.

        The manifest is every artifact this client uploaded for the run plus ``manifest``
        (entries ``{"path", "size", "sha256"}``; size and sha256 may be omitted when another
        process uploads the file). For a path in both, this client's verified record is kept.
        """
        if status not in RUN_STATUSES:
            raise InvalidInput(f"invalid run status {status!r}: use FINISHED, FAILED, KILLED, RUNNING or SCHEDULED")
        self._send_metrics(run_id)
        self.wait_for_environment(run_id)
        end = end_time_ms if end_time_ms is not None else now_ms()
        if status != "FINISHED":
            self.writer.append("run_status_changed", {"run_id": run_id, "status": status, "end_time_ms": end})
            return
        entries = {entry["path"]: entry for entry in map(_manifest_entry, manifest or ())}
        uploader = self._uploader
        if uploader is not None:
            entries.update((entry["path"], entry) for entry in uploader.manifest(run_id))
        self.writer.append("finalize_requested", {"run_id": run_id, "end_time_ms": end,
                                                  "manifest": list(entries.values())})
        if uploader is not None:
            uploader.forget_run(run_id)

    def delete_run(self, run_id: str) -> None:
        self.writer.append("run_deleted", {"run_id": run_id})

    def restore_run(self, run_id: str) -> None:
        self.writer.append("run_restored", {"run_id": run_id})

    # artifacts -----------------------------------------------------------------------------
    @property
    def uploader(self) -> ArtifactUploader:
        """The uploader behind the artifact methods (created on first use: the local store makes its root)."""
        with self._uploader_lock:
            if self._uploader is None:
                store = self._artifact_store or open_artifact_store(self.settings.artifact_store,
                                                                    self.settings.artifact_root)
                self._uploader = ArtifactUploader(store, self._commit_artifact)
            return self._uploader

    def log_model(self, run_id: str, local_path: str | os.PathLike[str], name: str | None = None, *,
                  model_type: str = "", params: Mapping[str, Any] | None = None,
                  tags: Mapping[str, Any] | None = None) -> LoggedModelRecord:
        """Log a saved model (a directory, e.g. what ``mlflow.sklearn.save_model`` wrote, or one file) as an
        MLflow 3 LoggedModel of ``run_id``: created PENDING, every file uploaded, verified and committed
        under ``<experiment>/models/<model_id>/artifacts``, then finalized READY with the list of those
        files — the worker makes it READY only if every one was committed. If an upload fails the model
        is finalized FAILED and ``ArtifactUploadError`` is raised. The model is not serialized here:
        save it first in whatever format its loader reads (MLflow clients load ``MLmodel`` directories
        with ``mlflow.<flavor>.load_model("models:/<model_id>")`` through the gateway)."""
        local = Path(local_path)
        if not local.exists():
            raise InvalidInput(f"Invalid model path {str(local)!r}: no such file or directory")
        files = [(p, p.relative_to(local).as_posix()) for p in sorted(local.rglob("*")) if p.is_file()] \
            if local.is_dir() else [(local, local.name)]
        if not files:
            raise InvalidInput(f"Invalid model path {str(local)!r}: the directory holds no files")
        experiment_id = self.experiment_of(run_id)
        model_id = v.new_model_id()
        name = v.validate_model_name(name) or model_id
        self.writer.append("logged_model_created", {
            "model_id": model_id, "experiment_id": experiment_id, "name": name, "model_type": model_type,
            "source_run_id": run_id, "artifact_location": f"mlflow-artifacts:/{experiment_id}/models/{model_id}/artifacts",
            "params": [{"key": v.validate_key(k, "param"), "value": v.validate_param_value(k, str(val))}
                       for k, val in (params or {}).items()],
            "tags": [self._tag(k, val) for k, val in (tags or {}).items()]})
        self.writer.append("run_models_linked", {"run_id": run_id, "direction": "OUTPUT",
                                                 "models": [{"model_id": model_id, "step": 0}]})
        uploader = self.model_uploader
        try:
            for path, rel in files:
                uploader.upload(model_id, experiment_id, path, rel, key=model_artifact_key(experiment_id, model_id, rel))
        except BaseException:
            self.writer.append("logged_model_finalized", {"model_id": model_id, "status": "FAILED", "manifest": []})
            uploader.forget_run(model_id)
            raise
        manifest = [entry["path"] for entry in uploader.manifest(model_id)]
        uploader.forget_run(model_id)
        self.writer.append("logged_model_finalized", {"model_id": model_id, "status": "READY", "manifest": manifest})
        return LoggedModelRecord(model_id, name, experiment_id, f"models:/{model_id}", tuple(manifest))

    @property
    def model_uploader(self) -> ArtifactUploader:
        """Uploads logged models' files to the same store; commits them as logged_model_artifact_committed."""
        store = self.uploader.store
        with self._uploader_lock:
            if self._model_uploader is None:
                self._model_uploader = ArtifactUploader(store, self._commit_model_artifact)
            return self._model_uploader

    def _commit_model_artifact(self, model_id: str, path: str, size: int, sha256: str, uri: str) -> None:
        self.writer.append("logged_model_artifact_committed", {"model_id": model_id, "path": path, "size": size,
                                                               "sha256": sha256, "uri": uri})

    def log_artifact(self, run_id: str, local_path: str | os.PathLike[str],
                     artifact_path: str | None = None) -> ArtifactRecord:
        """Upload one file as ``<artifact_path>/<file name>`` (MLflow's layout); raises
        ``ArtifactUploadError`` if it could not be stored, in which case nothing was committed."""
        name = Path(local_path).name
        return self.uploader.upload(run_id, self.experiment_of(run_id), local_path,
                                    f"{artifact_path}/{name}" if artifact_path else name)

    def log_artifacts(self, run_id: str, local_dir: str | os.PathLike[str],
                      artifact_path: str | None = None) -> list[ArtifactRecord]:
        """Upload the contents of ``local_dir`` under ``artifact_path``; each file is committed on its own."""
        return self.uploader.upload_dir(run_id, self.experiment_of(run_id), local_dir, artifact_path or "")

    def log_dict(self, run_id: str, obj: Any, artifact_file: str) -> ArtifactRecord:
        """Store ``obj`` as indented JSON at ``artifact_file`` (JSON is also valid YAML for ``.yaml`` names)."""
        return self._upload_temp(run_id, write_temp_json(obj), artifact_file)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> ArtifactRecord:
        return self._upload_temp(run_id, write_temp_text(text), artifact_file)

    def log_figure(self, run_id: str, figure: Any, artifact_file: str) -> ArtifactRecord:
        """Store a matplotlib figure as PNG; needs matplotlib (raises ImportError saying so)."""
        if not artifact_file.lower().endswith(".png"):
            raise InvalidInput(f"Invalid artifact_file {artifact_file!r} for log_figure: only .png is supported")
        validate_artifact_path(artifact_file)
        fd, name = tempfile.mkstemp(prefix="trackstream-", suffix=".png")
        os.close(fd)
        try:
            figure_to_png(figure, name)
        except BaseException:
            os.unlink(name)
            raise
        return self._upload_temp(run_id, Path(name), artifact_file)

    def _upload_temp(self, run_id: str, temp: Path, artifact_file: str) -> ArtifactRecord:
        try:
            return self.uploader.upload(run_id, self.experiment_of(run_id), temp, artifact_file)
        finally:
            temp.unlink(missing_ok=True)

    def _commit_artifact(self, run_id: str, path: str, size: int, sha256: str, uri: str) -> None:
        self.writer.append("artifact_committed", {"run_id": run_id, "path": path, "size": size,
                                                  "sha256": sha256, "uri": uri})

    # delivery ------------------------------------------------------------------------------
    @property
    def pending_points(self) -> int:
        """Metric points buffered in this process, not yet in the event spool."""
        return self._metrics.pending

    def flush(self, timeout: float = 30.0) -> int:
        """Send buffered metrics and wait for the broker; returns events still unacknowledged. Runs'
        environments being recorded are waited for first: they are part of what was logged.

        Raises ``MetricsNotSpooled`` if the spool refuses the buffered points (they stay buffered)."""
        self.wait_for_environment(timeout=timeout)
        self._send_buffered("kept in memory and retried by the next flush")
        return self.writer.flush(timeout)

    def close(self, timeout: float = 30.0) -> int:
        """Flush and stop; a writer this client created is closed too (its undelivered events stay
        in its spool). Returns events still unacknowledged."""
        if self._closed.is_set():
            return 0
        self._closed.set()
        self._flusher.join(timeout=5)
        self.wait_for_environment(timeout=timeout)
        atexit.unregister(self.close)
        if not self._owns_writer:
            return self.flush(timeout)
        try:
            self._send_buffered("lost: the client is closing")
        finally:
            pending = self.writer.close(timeout)
        return pending

    def _tag(self, key: str, value: Any) -> dict[str, str]:
        key = v.validate_key(key, "tag")
        value = v.apply_secret_policy(key, v.validate_tag_value(key, value), self.secret_policy, stacklevel=5)
        return {"key": key, "value": value}

    def _send_metrics(self, run_id: str | None) -> None:
        """Drain and append under one lock, so points the flusher drained cannot be appended after
        an event that ``set_terminated`` appends once its own drain returned. Batches the writer
        refuses go back to the buffer, ahead of newer points, and the error propagates."""
        with self._send_lock:
            batches = self._metrics.drain(run_id)
            for done, (rid, batch) in enumerate(batches):
                try:
                    self.writer.append("metrics_logged", {"run_id": rid, **batch.to_record_fields()})
                except BaseException:
                    self._metrics.put_back(batches[done:])
                    raise

    def _send_buffered(self, fate: str) -> None:
        """Send every buffered point; a refusal raises ``MetricsNotSpooled`` naming the spool and the cause."""
        try:
            self._send_metrics(None)
        except Exception as exc:
            self._note_send_failure(exc)
            spool = getattr(self.writer, "spool_dir", "(no spool)")
            raise MetricsNotSpooled(
                f"{self._metrics.pending} metric point(s) could not be written to the event spool {spool}: "
                f"{type(exc).__name__}: {exc}; they are {fate}") from exc

    def _note_send_failure(self, exc: Exception) -> None:
        self.failed_sends += 1
        cause = f"{type(exc).__name__}: {exc}"
        if cause not in self._warned_causes:  # once per cause; failed_sends counts every refusal
            self._warned_causes.add(cause)
            log.warning("trackstream: the event spool refused %d buffered metric point(s) (%s); they are kept "
                        "and retried", self._metrics.pending, cause)
            warnings.warn(f"metric points could not be written to the event spool "
                          f"{getattr(self.writer, 'spool_dir', '')}: {cause}; they are kept in memory and retried, "
                          f"and flush()/close() raise until they are recorded", SpoolWarning, stacklevel=2)

    def _flush_periodically(self, linger_s: float) -> None:
        while not self._closed.wait(linger_s):
            if self._metrics.pending:
                try:
                    self._send_metrics(None)
                except Exception as exc:  # the points are back in the buffer; the flusher must not die
                    self._note_send_failure(exc)


_live_clients: "weakref.WeakSet[TrackingClient]" = weakref.WeakSet()


def _clients_after_fork_in_child() -> None:
    for client in list(_live_clients):
        client._after_fork_in_child()


os.register_at_fork(after_in_child=_clients_after_fork_in_child)


@dataclass(frozen=True)
class LoggedModelRecord:
    """What ``log_model`` logged: the model's id, its ``models:/<id>`` URI and the committed files."""

    model_id: str
    name: str
    experiment_id: str
    model_uri: str
    files: tuple[str, ...]


def _manifest_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(entry, Mapping) or "path" not in entry:
        raise InvalidInput(f"Invalid manifest entry {entry!r}: expected a mapping with at least a 'path'")
    size = entry.get("size", -1)
    if type(size) is not int:
        raise InvalidInput(f"Invalid manifest entry {entry!r}: size must be an integer")
    return {"path": validate_artifact_path(entry["path"]), "size": size, "sha256": str(entry.get("sha256", ""))}
