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
    """Called by every TrackstreamStore, so the auth hook finds their writes."""
    _stores.add(store)


AUTH_NAME = "trackstream-written-marks"


class WrittenMarksAuthProvider:
    """``mlflow.request_auth_provider`` named ``AUTH_NAME``, which every TrackstreamStore puts in
    the host credentials of its REST requests (duck-typed to MLflow's RequestAuthProvider).

    An auth hook rather than MLflow's request-header providers: those add their headers to every
    REST request of the process, whatever server it goes to, and another server (with another
    topic) would refuse the marks. The hook sees each request's URL and adds only the marks of
    the store whose gateway it is.
    """

    def get_name(self) -> str:
        return AUTH_NAME

    def get_auth(self) -> "WrittenMarksAuth":
        return WrittenMarksAuth()


class WrittenMarksAuth:
    """A ``requests`` auth hook: adds ``X-Trackstream-Written`` for the store the request goes to
    (flushing its SDK client first); other requests pass untouched."""

    def __call__(self, request: Any) -> Any:
        for store in list(_stores):
            if store.serves(request.url):
                request.headers.update(store.written_marks())
        return request
