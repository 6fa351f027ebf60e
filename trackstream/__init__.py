"""trackstream: event-sourced ML experiment tracking.

::

    import trackstream as ts

    ts.set_experiment("resnet")
    with ts.start_run(run_name="baseline"):
        ts.log_params({"lr": 3e-4})
        for step in range(1000):
            ts.log_metric("loss", 1 / (step + 1), step=step)   # buffered, never blocks

    runs = ts.search_runs(filter_string="metrics.loss < 0.01")    # a pandas DataFrame, as mlflow's
    history = ts.get_metric_history(runs.run_id[0], "loss")       # numpy steps / values / timestamps

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
    "log_input", "log_artifact", "log_artifacts", "log_dict", "log_text", "log_figure", "log_model",
)
_ERRORS = (
    "TrackstreamError", "InvalidInput", "ParamConflict", "NotFound", "ResourceAlreadyExists",
    "PermissionDenied", "Unauthenticated", "SchemaError", "DeliveryError", "MetricsNotSpooled", "StorageError",
    "ServiceUnavailable",
)
_READS = ("search_runs", "get_run", "get_metric_history", "Run", "RunInfo", "HistoryColumns")
_EXPORTS: dict[str, str] = {
    **{name: "trackstream.producer.fluent" for name in _FLUENT},
    **{name: "trackstream.errors" for name in _ERRORS},
    **{name: "trackstream.reads" for name in _READS},
    "TrackingClient": "trackstream.producer.client",
    "DatasetInput": "trackstream.producer.inputs",
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
