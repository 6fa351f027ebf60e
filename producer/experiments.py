"""Which experiment a name means, for the SDK: asked of the tracking server, decided by the shared
rule of ``schemas/experiment_ids.py`` (the gateway applies the same rule).

The SDK writes to Kafka, but the name -> id mapping depends on what exists (a renamed experiment
keeps its id, so the old name must get a new one), so ``set_experiment`` asks the server's
MLflow API once per name and process. Without a server the SDK cannot see renames: it then uses
the name's first candidate id and says so in a log warning.
"""

from __future__ import annotations

import json
import os
from typing import Any, Protocol

from trackstream.errors import InvalidInput, ServiceUnavailable, TrackstreamError
from trackstream.schemas.experiment_ids import new_experiment_id

LOOKUP_TIMEOUT_S = 5.0


class ExperimentDirectory(Protocol):
    def by_name(self, name: str) -> tuple[str, str] | None:
        """(experiment id, lifecycle stage) of the experiment called ``name``, or None."""

    def exists(self, experiment_id: str) -> bool:
        """Whether any experiment (active or deleted) holds ``experiment_id``."""


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

    def exists(self, experiment_id: str) -> bool:
        return self._get("/api/2.0/mlflow/experiments/get", experiment_id=experiment_id) is not None

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
        return self._directory.exists(str(experiment_id))


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


def _error_body(exc: Any) -> dict[str, Any]:
    """The JSON body of an HTTPError, or {}."""
    try:
        body = json.loads(exc.read())
    except (ValueError, OSError):
        return {}
    return body if isinstance(body, dict) else {}
