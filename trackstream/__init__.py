"""trackstream: event-sourced ML experiment tracking.

::

    import trackstream as ts

    ts.set_experiment("resnet")
    with ts.start_run(run_name="baseline"):
        ts.log_params({"lr": 3e-4})
        for step in range(1000):
            ts.log_metric("loss", 1 / (step + 1), step=step)   # buffered, never blocks

The module-level functions work on one process-wide :class:`TrackingClient`
(:mod:`trackstream.producer.fluent`); the client itself is for explicit control. Names are
imported on first use, so ``import trackstream`` stays light: it never loads the server side
(the worker, the gateway, the embedded engine), which a training node need not install.
"""

from __future__ import annotations

import importlib
from typing import Any

_FLUENT = (
    "ActiveRun", "EXPERIMENT_ID_ENV", "active_run", "end_run", "flush", "get_client", "set_client", "set_experiment", "start_run",
    "log_param", "log_params", "log_metric", "log_metrics", "set_tag", "set_tags", "delete_tag",
    "log_artifact", "log_artifacts", "log_dict", "log_text", "log_figure", "log_model",
)
_ERRORS = (
    "TrackstreamError", "InvalidInput", "ParamConflict", "NotFound", "ResourceAlreadyExists",
    "PermissionDenied", "Unauthenticated", "SchemaError", "DeliveryError", "StorageError",
    "ServiceUnavailable",
)
_EXPORTS: dict[str, str] = {
    **{name: "trackstream.producer.fluent" for name in _FLUENT},
    **{name: "trackstream.errors" for name in _ERRORS},
    "TrackingClient": "trackstream.producer.client",
    "LoggedModelRecord": "trackstream.producer.client",
    "ArtifactRecord": "trackstream.producer.artifacts",
    "ArtifactUploadError": "trackstream.producer.artifacts",
    "ArtifactVerificationError": "trackstream.producer.artifacts",
    "SpoolFull": "trackstream.producer.spool",
    "SecretKeyWarning": "trackstream.producer.validation",
    "SecretPolicy": "trackstream.producer.validation",
}
__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'trackstream' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
