"""The mlflow client's fast path: ``MLFLOW_TRACKING_URI=trackstream://host:port``.

MLflow loads this store through the ``mlflow.tracking_store`` entry point (pyproject.toml,
``trackstream/mlflow_plugin.py``), so
the unmodified mlflow client — ``mlflow.log_metric``, ``mlflow.autolog()``, framework callbacks,
system metrics — runs on it:

* **Writes go through the SDK** (:class:`~trackstream.producer.client.TrackingClient`): run
  creation, run updates and termination, metrics, params, tags, tag deletion. They are spooled
  and sent straight to Kafka (``TRACKSTREAM_KAFKA``, ``TRACKSTREAM_TOPIC``), so ``log_metric`` costs
  microseconds and never waits on the network. Run ids are made by the SDK.
* **Everything else is MLflow's own RestStore** against ``http://host:port`` (the gateway):
  experiments, reads, search, ``log_inputs``, run deletion, and MLflow 3's LoggedModel calls.
* **Read-your-writes:** every REST request to the gateway carries the SDK's
  ``X-Trackstream-Written`` marks (added by :class:`trackstream.mlflow_plugin.WrittenMarksAuth`,
  an ``mlflow.request_auth_provider`` entry point named in this store's host credentials), so a
  read after a write waits for it on the server (``trackstream/read_protocol.py``).
* **Artifacts:** runs and logged models are shown with their artifact location rewritten from
  ``mlflow-artifacts:/<path>`` to ``http://host:port/api/2.0/mlflow-artifacts/artifacts/<path>``,
  the gateway's artifact proxy, which MLflow's HttpArtifactRepository uploads to; the proxy
  stores, verifies (size, sha256) and commits each file as an ``artifact_committed`` event, the
  same rule as the SDK's uploads. (MLflow resolves ``mlflow-artifacts:`` only against an http(s)
  tracking URI, hence the rewrite.)

Differences from a REST store, because writes are asynchronous: a changed param value, a tag
deletion of a tag that does not exist or a run id that does not exist are not refused by the
call; the worker rejects such events (``trackstream rejects``). A metric's MLflow 3 model and
dataset links (``model_id``, ``dataset_name``) are not stored.
"""

from __future__ import annotations

import threading
from typing import Any, Sequence
from urllib.parse import urlparse

from mlflow.entities import LoggedModel, Metric, Param, Run, RunData, RunInfo, RunStatus, RunTag
from mlflow.store.tracking.rest_store import RestStore
from mlflow.utils.credentials import get_default_host_creds

from trackstream.config import Settings
from trackstream.errors import InvalidInput
from trackstream.mlflow_plugin import AUTH_NAME, register_store
from trackstream.producer.client import TrackingClient
from trackstream.reads import written_marks
from trackstream.run_names import generated_run_name

SCHEME = "trackstream"
ARTIFACT_PROXY_PATH = "/api/2.0/mlflow-artifacts/artifacts"
_MLFLOW_ARTIFACTS = "mlflow-artifacts:"


def gateway_url(store_uri: str) -> str:
    """``trackstream://host:port[/prefix]`` -> ``http://host:port[/prefix]``."""
    parsed = urlparse(store_uri)
    if parsed.scheme != SCHEME or not parsed.netloc:
        raise InvalidInput(f"a trackstream tracking URI looks like trackstream://host:port, got {store_uri!r}")
    return f"http://{parsed.netloc}{parsed.path.rstrip('/')}"


def proxied_artifact_uri(uri: str | None, base_url: str) -> str | None:
    """``mlflow-artifacts:/<path>`` as the URL of the gateway's artifact proxy; other URIs unchanged."""
    if not uri or not uri.startswith(_MLFLOW_ARTIFACTS):
        return uri
    path = urlparse(uri).path.lstrip("/")
    return f"{base_url}{ARTIFACT_PROXY_PATH}/{path}"


def status_name(run_status: int | str | None) -> str | None:
    """MLflow passes run statuses as RunStatus ints (``set_terminated``) or names."""
    if run_status is None or isinstance(run_status, str):
        return run_status
    return RunStatus.to_string(run_status)


class TrackstreamStore(RestStore):
    """MLflow tracking store for ``trackstream://host:port``: SDK writes, REST reads (see module doc)."""

    def __init__(self, store_uri: str, artifact_uri: str | None = None, *,
                 client: TrackingClient | None = None) -> None:
        """``client``: the SDK client to write with (default: one from ``TRACKSTREAM_*``, made on the first write)."""
        self.base_url = gateway_url(store_uri)
        super().__init__(self._host_creds)
        self._client = client
        self._client_lock = threading.Lock()
        self._created: dict[str, RunInfo] = {}
        register_store(self)

    @property
    def client(self) -> TrackingClient:
        """The SDK client writes go through, created on the first write (``TRACKSTREAM_*`` settings)."""
        with self._client_lock:
            if self._client is None:
                self._client = TrackingClient(Settings.from_env())
            return self._client

    def written_marks(self) -> dict[str, str]:
        """The ``X-Trackstream-Written`` header for this store's writes (none before the first)."""
        return written_marks(self._client)

    def serves(self, url: str) -> bool:
        """Whether ``url`` is a request to this store's gateway."""
        return url == self.base_url or url.startswith(self.base_url + "/")

    def _host_creds(self) -> Any:
        """MLflow's credentials for the gateway (``MLFLOW_TRACKING_TOKEN``...), with the auth hook
        that adds the written marks — unless ``MLFLOW_TRACKING_AUTH`` names another auth plugin,
        which then wins (and reads no longer wait for this process's writes)."""
        creds = get_default_host_creds(self.base_url)
        if creds.auth is None:
            creds.auth = AUTH_NAME
        return creds

    # writes: the SDK -------------------------------------------------------------------------
    def create_run(self, experiment_id: str, user_id: str, start_time: int, tags: Sequence[RunTag],
                   run_name: str | None) -> Run:
        tag_map = {t.key: t.value for t in tags or ()}
        run_name = run_name or tag_map.get("mlflow.runName") or generated_run_name()
        experiment_id = str(experiment_id)
        run_id = self.client.create_run(
            experiment_id, run_name=run_name, tags=tag_map, parent_run_id=tag_map.get("mlflow.parentRunId"),
            user_id=user_id or "", source_name=tag_map.get("mlflow.source.name", ""), start_time_ms=start_time,
            provenance=False)
        tag_map["mlflow.runName"] = run_name
        info = RunInfo(run_id=run_id, experiment_id=experiment_id, user_id=user_id or "",
                       status=RunStatus.to_string(RunStatus.RUNNING), start_time=start_time, end_time=None,
                       lifecycle_stage="active", run_name=run_name,
                       artifact_uri=f"{self.base_url}{ARTIFACT_PROXY_PATH}/{experiment_id}/{run_id}/artifacts")
        self._created[run_id] = info
        return Run(info, RunData(tags=[RunTag(k, v) for k, v in tag_map.items()]))

    def update_run_info(self, run_id: str, run_status: int | str | None, end_time: int | None,
                        run_name: str | None) -> RunInfo:
        status = status_name(run_status)
        if run_name:
            self.client.set_tag(run_id, "mlflow.runName", run_name)
        if status is not None:
            self.client.set_terminated(run_id, status, end_time)
        known = self._created.get(run_id)
        if known is None:
            return self.get_run(run_id).info
        info = RunInfo(run_id=run_id, experiment_id=known.experiment_id, user_id=known.user_id,
                       status=status or known.status, start_time=known.start_time,
                       end_time=end_time if status not in (None, "RUNNING", "SCHEDULED") else known.end_time,
                       lifecycle_stage=known.lifecycle_stage, artifact_uri=known.artifact_uri,
                       run_name=run_name or known.run_name)
        self._created[run_id] = info
        return info

    def log_metric(self, run_id: str, metric: Metric) -> None:
        self.client.log_metric(run_id, metric.key, metric.value, metric.step, metric.timestamp)

    def log_param(self, run_id: str, param: Param) -> None:
        self.client.log_param(run_id, param.key, param.value)

    def set_tag(self, run_id: str, tag: RunTag) -> None:
        self.client.set_tag(run_id, tag.key, tag.value)

    def delete_tag(self, run_id: str, key: str) -> None:
        self.client.delete_tag(run_id, key)

    def log_batch(self, run_id: str, metrics: Sequence[Metric], params: Sequence[Param],
                  tags: Sequence[RunTag]) -> None:
        client = self.client
        if params:
            client.log_params(run_id, {p.key: p.value for p in params})
        by_key: dict[str, list[Metric]] = {}
        for m in metrics:
            by_key.setdefault(m.key, []).append(m)
        for key, points in by_key.items():
            if len(points) == 1:
                client.log_metric(run_id, key, points[0].value, points[0].step, points[0].timestamp)
            else:  # the SDK's vectorised path: validated and sent as one columnar batch
                client.log_metric_arrays(run_id, key, [m.value for m in points], [m.step for m in points],
                                         [m.timestamp for m in points])
        if tags:
            client.set_tags(run_id, {t.key: t.value for t in tags})

    # reads: RestStore, with artifact locations pointing at the gateway's proxy ----------------
    def get_run(self, run_id: str) -> Run:
        return self._proxied_run(super().get_run(run_id))

    def _search_runs(self, *args: Any, **kwargs: Any) -> tuple[list[Run], str | None]:
        runs, token = super()._search_runs(*args, **kwargs)
        return [self._proxied_run(r) for r in runs], token

    def create_logged_model(self, *args: Any, **kwargs: Any) -> LoggedModel:
        return self._proxied_model(super().create_logged_model(*args, **kwargs))

    def get_logged_model(self, *args: Any, **kwargs: Any) -> LoggedModel:
        return self._proxied_model(super().get_logged_model(*args, **kwargs))

    def finalize_logged_model(self, *args: Any, **kwargs: Any) -> LoggedModel:
        return self._proxied_model(super().finalize_logged_model(*args, **kwargs))

    def search_logged_models(self, *args: Any, **kwargs: Any) -> Any:
        page = super().search_logged_models(*args, **kwargs)
        page[:] = [self._proxied_model(m) for m in page]
        return page

    def _proxied_run(self, run: Run) -> Run:
        info = run.info
        uri = proxied_artifact_uri(info.artifact_uri, self.base_url)
        if uri == info.artifact_uri:
            return run
        return Run(RunInfo(run_id=info.run_id, experiment_id=info.experiment_id, user_id=info.user_id,
                           status=info.status, start_time=info.start_time, end_time=info.end_time,
                           lifecycle_stage=info.lifecycle_stage, artifact_uri=uri, run_name=info.run_name),
                   run.data, run.inputs, run.outputs)

    def _proxied_model(self, model: LoggedModel) -> LoggedModel:
        uri = proxied_artifact_uri(model.artifact_location, self.base_url)
        if uri == model.artifact_location:
            return model
        return LoggedModel.from_dictionary({**model.to_dictionary(), "artifact_location": uri})
