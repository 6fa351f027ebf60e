"""The trackstream SDK. ``import producer as ts`` gives the MLflow-style API of
:mod:`producer.fluent` (``ts.start_run()``, ``ts.log_metric(...)``) and :class:`TrackingClient`.

Attributes are imported on first use, so ``import producer.validation`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_FLUENT = (
    "ActiveRun", "EXPERIMENT_ID_ENV", "get_client", "set_client", "set_experiment", "start_run", "active_run", "end_run",
    "log_param", "log_params", "log_metric", "log_metrics", "set_tag", "set_tags", "delete_tag",
    "log_artifact", "log_artifacts", "log_dict", "log_text", "log_figure", "flush",
)
_EXPORTS = {
    **{name: "producer.fluent" for name in _FLUENT},
    "TrackingClient": "producer.client",
    "experiment_id_for": "producer.client",
    "collect_provenance": "producer.provenance",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'producer' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
