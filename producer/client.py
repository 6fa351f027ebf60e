"""TrackingClient: the explicit SDK object; every operation names its run by id.

Writes are events appended to Kafka. Metric points are buffered and sent as columnar batches
(``metrics_logged``), so ``log_metric`` costs about a microsecond and never waits on the
network; a background thread ships partial buffers every ``linger_s``.
"""

from __future__ import annotations

import atexit
import hashlib
import threading
import time
import uuid
from typing import Any, Mapping

import numpy as np

from producer import validation as v
from producer.kafka_writer import EventWriter
from producer.metric_buffer import MetricBuffer
from trackstream.config import Settings
from trackstream.errors import InvalidInput

DEFAULT_EXPERIMENT_ID = "0"
DEFAULT_EXPERIMENT_NAME = "Default"


def experiment_id_for(name: str) -> str:
    """Experiment ids are derived from the name so that many processes agree without a server."""
    if name == DEFAULT_EXPERIMENT_NAME:
        return DEFAULT_EXPERIMENT_ID
    return str(int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") >> 2)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class TrackingClient:
    def __init__(self, settings: Settings | None = None, *, writer: EventWriter | None = None,
                 linger_s: float = 0.2, max_points_per_batch: int = 50_000,
                 secret_policy: "v.SecretPolicy" = v.SecretPolicy.WARN) -> None:
        self.settings = settings or Settings.from_env()
        self.writer = writer or EventWriter(self.settings.kafka_bootstrap, self.settings.topic)
        self.secret_policy = secret_policy
        self._metrics = MetricBuffer(max_points_per_batch)
        self._closed = threading.Event()
        self._flusher = threading.Thread(target=self._flush_periodically, args=(linger_s,),
                                         name="trackstream-metric-flusher", daemon=True)
        self._flusher.start()
        atexit.register(self.close)

    # experiments ---------------------------------------------------------------------------
    def create_experiment(self, name: str, artifact_location: str = "",
                          tags: Mapping[str, str] | None = None) -> str:
        name = v.validate_experiment_name(name)
        experiment_id = experiment_id_for(name)
        self.writer.append("experiment_created", {
            "experiment_id": experiment_id, "name": name, "artifact_location": artifact_location,
            "tags": [{"key": v.validate_key(k, "experiment tag"), "value": v.validate_experiment_tag_value(k, val)}
                     for k, val in (tags or {}).items()],
        })
        return experiment_id

    # runs ----------------------------------------------------------------------------------
    def create_run(self, experiment_id: str = DEFAULT_EXPERIMENT_ID, run_name: str = "",
                   tags: Mapping[str, Any] | None = None, parent_run_id: str | None = None,
                   user_id: str = "", source_name: str = "", start_time_ms: int | None = None) -> str:
        run_id = uuid.uuid4().hex
        tag_list = [self._tag(k, val) for k, val in (tags or {}).items()]
        if run_name:
            tag_list.append({"key": "mlflow.runName", "value": run_name})
        self.writer.append("run_created", {
            "run_id": run_id, "experiment_id": experiment_id, "run_name": run_name, "user_id": user_id,
            "source_name": source_name, "parent_run_id": parent_run_id,
            "start_time_ms": start_time_ms if start_time_ms is not None else now_ms(), "tags": tag_list,
        })
        return run_id

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
        value, step, timestamp_ms = v.validate_metric(key, value, step, now_ms() if timestamp_ms is None else timestamp_ms)
        if self._metrics.add(run_id, key, value, step, timestamp_ms):
            self._send_metrics(run_id)

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0,
                    timestamp_ms: int | None = None) -> None:
        ts = now_ms() if timestamp_ms is None else timestamp_ms
        for key, value in metrics.items():
            self.log_metric(run_id, key, value, step, ts)

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

    def delete_tag(self, run_id: str, key: str) -> None:
        self.writer.append("tag_deleted", {"run_id": run_id, "key": v.validate_key(key, "tag")})

    def set_terminated(self, run_id: str, status: str = "FINISHED", end_time_ms: int | None = None,
                       manifest: list[dict[str, Any]] | None = None) -> None:
        """End a run. FINISHED goes through finalize-requested so the consumer can hold it until
        every artifact in the manifest is committed; FAILED / KILLED are recorded as such."""
        self._send_metrics(run_id)
        end = end_time_ms if end_time_ms is not None else now_ms()
        if status == "FINISHED":
            self.writer.append("finalize_requested", {"run_id": run_id, "end_time_ms": end,
                                                      "manifest": list(manifest or [])})
        elif status in ("FAILED", "KILLED", "RUNNING", "SCHEDULED"):
            self.writer.append("run_status_changed", {"run_id": run_id, "status": status, "end_time_ms": end})
        else:
            raise InvalidInput(f"invalid run status {status!r}: use FINISHED, FAILED, KILLED, RUNNING or SCHEDULED")

    def delete_run(self, run_id: str) -> None:
        self.writer.append("run_deleted", {"run_id": run_id})

    def restore_run(self, run_id: str) -> None:
        self.writer.append("run_restored", {"run_id": run_id})

    # delivery ------------------------------------------------------------------------------
    def flush(self, timeout: float = 30.0) -> int:
        """Send buffered metrics and wait for the broker; returns events still unacknowledged."""
        self._send_metrics(None)
        return self.writer.flush(timeout)

    def close(self, timeout: float = 30.0) -> int:
        if self._closed.is_set():
            return 0
        self._closed.set()
        self._flusher.join(timeout=5)
        atexit.unregister(self.close)
        return self.flush(timeout)

    def _tag(self, key: str, value: Any) -> dict[str, str]:
        key = v.validate_key(key, "tag")
        value = v.apply_secret_policy(key, v.validate_tag_value(key, value), self.secret_policy, stacklevel=5)
        return {"key": key, "value": value}

    def _send_metrics(self, run_id: str | None) -> None:
        for rid, batch in self._metrics.drain(run_id):
            self.writer.append("metrics_logged", {"run_id": rid, **batch.to_record_fields()})

    def _flush_periodically(self, linger_s: float) -> None:
        while not self._closed.wait(linger_s):
            if self._metrics.pending:
                try:
                    self._send_metrics(None)
                except Exception:  # surfaced on the next flush(); the flusher must not die
                    pass
