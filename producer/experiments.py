"""Which experiment a name means, for the SDK: asked of the tracking server, decided by the shared
rule of ``schemas/experiment_ids.py`` (the gateway applies the same rule).

The SDK writes to Kafka, but the name -> id mapping depends on what exists (a renamed experiment
keeps its id, so the old name must get a new one), so ``set_experiment`` asks the server's
MLflow API once per name and process. Without a server the SDK cannot see renames: it then uses
the name's first candidate id and says so in a log warning.

A new run's experiment must exist and be active, as MLflow's runs/create requires; the SDK asks
the server before sending ``run_created`` (:func:`require_run_experiment` decides). The
materializer does not check it: a run's events and its experiment's events live on different
partitions, whose relative order a lagging worker or a replay does not keep.
"""

from __future__ import annotations

import json
import os
from typing import Any, Protocol

from trackstream.errors import InvalidInput, ServiceUnavailable, TrackstreamError
from trackstream.schemas.experiment_ids import DEFAULT_EXPERIMENT_ID, new_experiment_id

LOOKUP_TIMEOUT_S = 5.0


class ExperimentDirectory(Protocol):
    def by_name(self, name: str) -> tuple[str, str] | None:
        """(experiment id, lifecycle stage) of the experiment called ``name``, or None."""

    def stage_of(self, experiment_id: str) -> str | None:
        """Lifecycle stage ("active" / "deleted") of the experiment holding ``experiment_id``, or None."""


class ServerExperimentDirectory:
    """Looks experiments up through a tracking server's MLflow REST API (``TRACKSTREAM_TOKEN`` as
    the bearer token when set)."""

    def __init__(self, base_url: str, timeout: float = LOOKUP_TIMEOUT_S) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def by_name(self, name: str) -> tuple[str, str] | None:
        found = self._get("/api/2.0/mlflow/experiments/get-by-name", experiment_name=name)
        if found is None:
            return None
        experiment = found["experiment"]
        return str(experiment["experiment_id"]), str(experiment.get("lifecycle_stage", "active"))

    def stage_of(self, experiment_id: str) -> str | None:
        found = self._get("/api/2.0/mlflow/experiments/get", experiment_id=experiment_id)
        return None if found is None else str(found["experiment"].get("lifecycle_stage", "active"))

    def _get(self, path: str, **query: str) -> dict[str, Any] | None:
        """The JSON answer, None for RESOURCE_DOES_NOT_EXIST; ServiceUnavailable if there is no server."""
        import urllib.error  # here: urllib.request costs ~15 ms of import time, and only set_experiment needs it
        import urllib.parse
        import urllib.request

        headers = {"Accept": "application/json"}
        token = os.environ.get("TRACKSTREAM_TOKEN")
        if token:
            headers["Authorization"] = f"Bearer {token}"
        url = f"{self.base_url}{path}?{urllib.parse.urlencode(query)}"
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=self.timeout) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            body = _error_body(exc)
            if exc.code == 404 and body.get("error_code") == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise TrackstreamError(f"the tracking server at {self.base_url} refused {path}: HTTP {exc.code} "
                                   f"{body.get('message', exc.reason)}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise ServiceUnavailable(f"no tracking server answers at {self.base_url}: {exc}") from exc


class _TakenOnServer:
    """``id in taken`` asks the directory, one candidate at a time."""

    def __init__(self, directory: ExperimentDirectory) -> None:
        self._directory = directory

    def __contains__(self, experiment_id: object) -> bool:
        return self._directory.stage_of(str(experiment_id)) is not None


def resolve_experiment(name: str, directory: ExperimentDirectory) -> tuple[str, bool]:
    """(id, whether it must be created) of the experiment ``set_experiment(name)`` means.

    A deleted experiment of that name is refused, as MLflow refuses it."""
    found = directory.by_name(name)
    if found is not None:
        experiment_id, stage = found
        if stage == "deleted":
            raise InvalidInput(f"Cannot set a deleted experiment '{name}' as the active experiment (id "
                               f"{experiment_id}). Restore it first, or pick another name.")
        return experiment_id, False
    return new_experiment_id(name, _TakenOnServer(directory)), True


def require_run_experiment(experiment_id: str, stage: str | None, sent_here: bool) -> None:
    """Refuse a new run in ``experiment_id`` unless its experiment is active, given the server's
    ``stage`` for it (None: unknown). ``sent_here``: this client sent its ``experiment_created``,
    which the server may not have materialized yet. The Default experiment exists until deleted."""
    if stage == "deleted":
        raise InvalidInput(f"Cannot create a run in experiment {experiment_id}: the experiment must be in the "
                           f"'active' state. Current state is deleted. Restore it first, or pick another experiment.")
    if stage is None and not sent_here and experiment_id != DEFAULT_EXPERIMENT_ID:
        raise InvalidInput(f"Cannot create a run in experiment {experiment_id}: no experiment with id="
                           f"{experiment_id} exists. Create it first (ts.set_experiment(name)).")


def _error_body(exc: Any) -> dict[str, Any]:
    """The JSON body of an HTTPError, or {}."""
    try:
        body = json.loads(exc.read())
    except (ValueError, OSError):
        return {}
    return body if isinstance(body, dict) else {}
