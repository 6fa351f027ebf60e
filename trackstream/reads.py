"""The SDK's reads: ``ts.search_runs``, ``ts.get_run`` and ``ts.get_metric_history``.

They ask the trackstream server (``TRACKSTREAM_SERVER_URL``, else ``http://TRACKSTREAM_SERVER_HOST:
TRACKSTREAM_SERVER_PORT``) over HTTP, through :class:`trackstream.reading.HttpReader`.

Read-your-writes: the SDK writes to Kafka, not through the server, so before each read the
process-wide client (if this process has one) is flushed and the highest Kafka offset per
partition of its acknowledged events goes along in the ``X-Trackstream-Written`` header; the
server answers once its worker has materialized them (``trackstream/read_protocol.py``). A read
right after ``ts.log_metric`` therefore sees the point.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable

from trackstream.config import Settings
from trackstream.errors import InvalidInput
from trackstream.read_protocol import WRITTEN_HEADER, HistoryColumns, format_written
from trackstream.reading import HttpReader

if TYPE_CHECKING:
    import pandas

    from trackstream.producer.client import TrackingClient

__all__ = ["Run", "RunInfo", "HistoryColumns", "search_runs", "get_run", "get_metric_history", "written_marks"]

SEARCH_PAGE_SIZE = 10_000          # as mlflow.search_runs pages
SEARCH_MAX_RESULTS = 100_000       # mlflow.search_runs' default max_results
FLUSH_BEFORE_READ_TIMEOUT_S = 10.0
RUN_VIEW_TYPES = ("ACTIVE_ONLY", "DELETED_ONLY", "ALL")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunInfo:
    """MLflow's RunInfo fields; times are Unix milliseconds (``end_time`` None while running)."""

    run_id: str
    run_name: str
    experiment_id: str
    user_id: str
    status: str
    start_time: int
    end_time: int | None
    lifecycle_stage: str
    artifact_uri: str


@dataclass(frozen=True)
class Run:
    """A run as ``ts.get_run`` returns it: ``info``, and ``params`` / ``tags`` / ``metrics`` (the
    latest value of each metric) as dicts, like ``mlflow.entities.Run.data``."""

    info: RunInfo
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        return self.info.run_id


def run_from_mlflow(run: dict[str, Any]) -> Run:
    """A :class:`Run` from MLflow's Run JSON (``runs/get``, ``runs/search``)."""
    info, data = run["info"], run.get("data", {})
    end_time = info.get("end_time")
    return Run(
        info=RunInfo(run_id=info["run_id"], run_name=info.get("run_name", ""), experiment_id=str(info["experiment_id"]),
                     user_id=info.get("user_id", ""), status=info["status"], start_time=int(info["start_time"]),
                     end_time=None if end_time in (None, "") else int(end_time),
                     lifecycle_stage=info.get("lifecycle_stage", "active"), artifact_uri=info.get("artifact_uri", "")),
        params={p["key"]: p["value"] for p in data.get("params", [])},
        metrics={m["key"]: float(m["value"]) for m in data.get("metrics", [])},
        tags={t["key"]: t["value"] for t in data.get("tags", [])},
    )


def runs_dataframe(runs: Iterable[Run]) -> "pandas.DataFrame":
    """The DataFrame ``mlflow.search_runs`` builds: run_id, experiment_id, status, artifact_uri,
    start_time, end_time (UTC pandas timestamps), then ``metrics.<key>`` (NaN where a run lacks
    it), ``params.<key>`` and ``tags.<key>`` (None where missing). Keys are sorted within each group
    (MLflow's column order there is that of a Python set)."""
    pd = _pandas()
    import numpy as np

    runs = list(runs)
    data: dict[str, list[Any]] = {
        "run_id": [r.info.run_id for r in runs],
        "experiment_id": [r.info.experiment_id for r in runs],
        "status": [r.info.status for r in runs],
        "artifact_uri": [r.info.artifact_uri for r in runs],
        "start_time": [pd.to_datetime(r.info.start_time, unit="ms", utc=True) for r in runs],
        "end_time": [pd.to_datetime(r.info.end_time, unit="ms", utc=True) for r in runs],
    }
    for prefix, attribute, missing in (("metrics", "metrics", np.nan), ("params", "params", None),
                                       ("tags", "tags", None)):
        keys = sorted({k for r in runs for k in getattr(r, attribute)})
        for key in keys:
            data[f"{prefix}.{key}"] = [getattr(r, attribute).get(key, missing) for r in runs]
    return pd.DataFrame(data)


def search_runs(experiment_ids: list[str] | None = None, filter_string: str = "", order_by: list[str] | None = None,
                max_results: int = SEARCH_MAX_RESULTS, run_view_type: str = "ACTIVE_ONLY") -> "pandas.DataFrame":
    """Runs matching MLflow's filter grammar, as ``mlflow.search_runs`` returns them (see
    :func:`runs_dataframe`). ``experiment_ids`` defaults to the current experiment (that of the
    active run, else :func:`ts.set_experiment`'s). Needs pandas."""
    _pandas()  # fail before any network call when pandas is missing
    if not isinstance(max_results, int) or isinstance(max_results, bool) or max_results < 1:
        raise InvalidInput(f"max_results must be a positive integer, got {max_results!r}")
    if run_view_type not in RUN_VIEW_TYPES:
        raise InvalidInput(f"run_view_type must be one of {', '.join(RUN_VIEW_TYPES)}, got {run_view_type!r}")
    if experiment_ids is None:
        from trackstream.producer.fluent import current_experiment_id

        experiment_ids = [current_experiment_id()]
    if isinstance(experiment_ids, str):
        raise InvalidInput(f"experiment_ids must be a list of experiment ids, got the string {experiment_ids!r}")
    reader = _reader()
    runs: list[Run] = []
    page_token: str | None = None
    while len(runs) < max_results:
        body: dict[str, Any] = {"experiment_ids": [str(e) for e in experiment_ids], "filter": filter_string or "",
                                "order_by": list(order_by or []), "run_view_type": run_view_type,
                                "max_results": min(SEARCH_PAGE_SIZE, max_results - len(runs))}
        if page_token:
            body["page_token"] = page_token
        page = reader.mlflow_search_runs(body)
        runs += [run_from_mlflow(r) for r in page.get("runs", [])]
        page_token = page.get("next_page_token")
        if not page_token:
            break
    return runs_dataframe(runs)


def get_run(run_id: str) -> Run:
    """One run with its params, tags and latest metrics; ``NotFound`` if the server has no such run."""
    if not isinstance(run_id, str) or not run_id:
        raise InvalidInput(f"run_id must be a non-empty string, got {run_id!r}")
    return run_from_mlflow(_reader().mlflow_run(run_id))


def get_metric_history(run_id: str, key: str) -> HistoryColumns:
    """Every point of one metric as numpy columns ``steps`` (int64), ``values`` (float64) and
    ``timestamps`` (int64 Unix ms), in step order; read in one binary response, not JSON pages."""
    if not isinstance(run_id, str) or not run_id:
        raise InvalidInput(f"run_id must be a non-empty string, got {run_id!r}")
    if not isinstance(key, str) or not key:
        raise InvalidInput(f"key must be a non-empty metric name, got {key!r}")
    return _reader().history_columns(run_id, key)


def written_marks(client: "TrackingClient | None") -> dict[str, str]:
    """The ``X-Trackstream-Written`` header for what ``client`` has written (after flushing it),
    or no header when it has written nothing. Events the broker has not acknowledged within
    ``FLUSH_BEFORE_READ_TIMEOUT_S`` (it is down) cannot be waited for; the read goes ahead without them."""
    if client is None:
        return {}
    unacknowledged = client.flush(FLUSH_BEFORE_READ_TIMEOUT_S)
    if unacknowledged:
        log.warning("%d event(s) are not in Kafka yet; this read may not show them", unacknowledged)
    marks = client.writer.acknowledged_offsets()
    return {WRITTEN_HEADER: format_written(client.writer.topic, marks)} if marks else {}


def _reader() -> HttpReader:
    from trackstream.producer.fluent import current_client

    client = current_client()
    settings = client.settings if client is not None else Settings.from_env()
    return HttpReader(settings.client_read_url, extra_headers=lambda: written_marks(current_client()))


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:
        raise ImportError("ts.search_runs returns a pandas DataFrame, and pandas is not installed: "
                          "pip install pandas") from None
    return pandas
