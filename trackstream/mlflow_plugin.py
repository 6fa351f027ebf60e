"""The mlflow entry points (pyproject.toml) of the ``trackstream://`` store; the store itself is
:mod:`trackstream.mlflow_store`.

This module imports nothing of mlflow: mlflow loads its entry points while ``import mlflow`` is
still running, and a target that imported mlflow in turn would be half-initialised whenever
``trackstream.mlflow_store`` happened to be imported before mlflow.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trackstream.mlflow_store import TrackstreamStore

_stores: "weakref.WeakSet[TrackstreamStore]" = weakref.WeakSet()


def tracking_store(store_uri: str, artifact_uri: str | None = None) -> Any:
    """``mlflow.tracking_store`` builder for the ``trackstream`` scheme."""
    from trackstream.mlflow_store import TrackstreamStore

    return TrackstreamStore(store_uri, artifact_uri)


def register_store(store: "TrackstreamStore") -> None:
    """Called by every TrackstreamStore, so the header provider finds their writes."""
    _stores.add(store)


class WrittenMarksHeaderProvider:
    """``mlflow.request_header_provider``: adds the ``X-Trackstream-Written`` header to the mlflow
    client's REST requests once a trackstream store of this process has written (flushing its SDK
    client first). Duck-typed to MLflow's RequestHeaderProvider (``in_context``, ``request_headers``)."""

    def in_context(self) -> bool:
        return any(store.has_written for store in list(_stores))

    def request_headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        for store in list(_stores):
            headers.update(store.written_marks())
        return headers
