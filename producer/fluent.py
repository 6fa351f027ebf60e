"""MLflow-style module-level API over one process-wide :class:`TrackingClient`.

::

    import trackstream as ts

    ts.set_experiment("resnet")
    with ts.start_run(run_name="baseline"):
        ts.log_params({"lr": 3e-4})
        for step in range(1000):
            ts.log_metric("loss", 1 / (step + 1), step=step)
        with ts.start_run(run_name="eval", nested=True):
            ts.log_metric("acc", 0.9)

Like MLflow, each thread has its own stack of active runs and a log call with no active run
starts one, and ``start_run(run_id=...)`` *resumes* a run: it goes back to RUNNING and ending it
(``end_run`` or leaving the ``with`` block) ends it again. For distributed training, where every
rank logs into the run rank 0 created, ``start_run(run_id=..., attach=True)`` *attaches*
instead: it sends nothing to attach, each process logs with its own writer id, and leaving does
not end the run — the creator does.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from types import TracebackType
from typing import Any, Mapping

from trackstream.producer.artifacts import ArtifactRecord
from trackstream.producer.inputs import DatasetInput, dataset_input
from trackstream.producer.client import DEFAULT_EXPERIMENT_ID, DEFAULT_EXPERIMENT_NAME, LoggedModelRecord, TrackingClient
from trackstream.errors import InvalidInput

__all__ = [
    "ActiveRun",
    "EXPERIMENT_ID_ENV",
    "get_client",
    "set_client",
    "set_experiment",
    "start_run",
    "active_run",
    "end_run",
    "log_param",
    "log_params",
    "log_metric",
    "log_metrics",
    "set_tag",
    "set_tags",
    "delete_tag",
    "log_input",
    "log_artifact",
    "log_artifacts",
    "log_dict",
    "log_text",
    "log_figure",
    "flush",
]

EXPERIMENT_ID_ENV = "TRACKSTREAM_EXPERIMENT_ID"


class ActiveRun:
    """A run on this thread's stack; a context manager that ends it (FINISHED, FAILED on an
    exception, KILLED on KeyboardInterrupt). ``.info`` is the run itself, for MLflow-style
    ``run.info.run_id``."""

    def __init__(self, run_id: str, experiment_id: str, run_name: str = "",
                 parent_run_id: str | None = None, attached: bool = False) -> None:
        self.run_id = run_id
        self.experiment_id = experiment_id
        self.run_name = run_name
        self.parent_run_id = parent_run_id
        self.attached = attached

    @property
    def info(self) -> "ActiveRun":
        return self

    def __repr__(self) -> str:
        kind = "attached" if self.attached else "owned"
        return f"<ActiveRun {self.run_id} experiment={self.experiment_id} {kind}>"

    def __enter__(self) -> "ActiveRun":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        _end_through(self, _status_for(exc_type))


class _Stack(threading.local):
    def __init__(self) -> None:
        self.runs: list[ActiveRun] = []


_lock = threading.RLock()
_client: TrackingClient | None = None
_experiment_id: str | None = None
_created_experiments: dict[str, str] = {}
_stack = _Stack()


def get_client() -> TrackingClient:
    """The process-wide client, created from ``TRACKSTREAM_*`` variables on first use."""
    global _client
    client = _client
    if client is not None:
        return client
    with _lock:
        if _client is None:
            _client = TrackingClient()
            _hook_exit()
        return _client


def current_client() -> TrackingClient | None:
    """The process-wide client if one exists; never creates one (readers use it to find their writes)."""
    return _client


def set_client(client: TrackingClient | None) -> None:
    """Use ``client`` for the module-level API (``None``: create one from the environment on next use).

    Refused while this thread has active runs: they belong to the old client.
    """
    global _client
    if _stack.runs:
        raise InvalidInput(f"cannot switch clients while run {_stack.runs[-1].run_id} is active; end it first")
    with _lock:
        _client = client
        _created_experiments.clear()
        if client is not None:
            _hook_exit()


def set_experiment(name: str) -> str:
    """Make ``name`` the experiment of runs started from now on (created if needed); returns its id.

    As in MLflow, the name means the experiment called that *now*: after a rename the old name
    no longer exists, so ``set_experiment(old_name)`` creates a new experiment (with a new id)
    rather than following the renamed one; a deleted experiment is refused. Each call asks the
    tracking server anew (see ``TrackingClient.create_experiment``)."""
    global _experiment_id
    experiment_id = get_client().create_experiment(name)
    with _lock:
        _created_experiments[name] = experiment_id
    _experiment_id = experiment_id
    return experiment_id


def start_run(run_id: str | None = None, run_name: str | None = None, nested: bool = False,
              tags: Mapping[str, Any] | None = None, experiment_id: str | None = None,
              parent_run_id: str | None = None, attach: bool = False) -> ActiveRun:
    """Start a run, resume ``run_id``, or attach to it, and push it on this thread's stack of active runs.

    The experiment is ``experiment_id``, else the parent's for a nested run, else the one of
    :func:`set_experiment`, else ``$TRACKSTREAM_EXPERIMENT_ID``, else the Default experiment ("0"). A second run while one is
    active must be ``nested=True`` (its parent is the active run) or name that run as
    ``parent_run_id``. ``run_id`` alone resumes that run as MLflow does (status RUNNING; ending
    it ends the run); with ``attach=True`` this process only joins it (sends nothing except
    ``tags`` / ``run_name`` when given, and leaving does not end it).
    """
    if attach and run_id is None:
        raise InvalidInput("start_run(attach=True) needs the run_id of the run to attach to")
    runs = _stack.runs
    active = runs[-1] if runs else None
    if parent_run_id is not None:
        if active is not None and active.run_id != parent_run_id:
            raise InvalidInput(f"Current run with UUID {active.run_id} does not match the specified "
                               f"parent_run_id {parent_run_id}")
    elif nested:
        if active is None:
            raise InvalidInput("start_run(nested=True) needs an active parent run: start one first, "
                               "or pass parent_run_id")
        parent_run_id = active.run_id
    elif active is not None:
        raise InvalidInput(f"Run with UUID {active.run_id} is already active. To start a new run, first end the "
                           "current run with end_run(). To start a nested run, call start_run with nested=True")
    client = get_client()
    if experiment_id is None and active is not None:
        experiment_id = active.experiment_id
    experiment_id = experiment_id or _experiment_id or os.environ.get(EXPERIMENT_ID_ENV) or DEFAULT_EXPERIMENT_ID
    if run_id is not None:
        if attach:
            client.attach_run(run_id, experiment_id)
        else:
            client.resume_run(run_id, experiment_id)
        extra = dict(tags or {})
        if run_name:
            extra["mlflow.runName"] = run_name
        if extra:
            client.set_tags(run_id, extra)
        run = ActiveRun(run_id, experiment_id, run_name or "", parent_run_id, attached=attach)
    else:
        if experiment_id == DEFAULT_EXPERIMENT_ID:
            _ensure_experiment(DEFAULT_EXPERIMENT_NAME)
        new_id = client.create_run(experiment_id, run_name=run_name or "", tags=tags, parent_run_id=parent_run_id)
        run = ActiveRun(new_id, experiment_id, run_name or "", parent_run_id)
    runs.append(run)
    return run


def current_experiment_id() -> str:
    """The experiment a run started now would go to (see :func:`start_run`); reads default to it."""
    runs = _stack.runs
    if runs:
        return runs[-1].experiment_id
    return _experiment_id or os.environ.get(EXPERIMENT_ID_ENV) or DEFAULT_EXPERIMENT_ID


def active_run() -> ActiveRun | None:
    runs = _stack.runs
    return runs[-1] if runs else None


def end_run(status: str = "FINISHED") -> None:
    """End the innermost active run of this thread (no-op without one).

    An attached run is only flushed and detached: its creator ends it.
    """
    runs = _stack.runs
    if runs:
        _end(runs[-1], status)


def log_param(key: str, value: Any) -> None:
    get_client().log_params(_current().run_id, {key: value})


def log_params(params: Mapping[str, Any]) -> None:
    get_client().log_params(_current().run_id, params)


def log_metric(key: str, value: float, step: int | None = None, timestamp: int | None = None) -> None:
    """``timestamp`` in Unix ms (now if None); ``step`` None is 0, as in MLflow."""
    get_client().log_metric(_current().run_id, key, value, 0 if step is None else step, timestamp)


def log_metrics(metrics: Mapping[str, float], step: int | None = None, timestamp: int | None = None) -> None:
    get_client().log_metrics(_current().run_id, metrics, 0 if step is None else step, timestamp)


def set_tag(key: str, value: Any) -> None:
    get_client().set_tags(_current().run_id, {key: value})


def set_tags(tags: Mapping[str, Any]) -> None:
    get_client().set_tags(_current().run_id, tags)


def delete_tag(key: str) -> None:
    get_client().delete_tag(_current().run_id, key)


def log_input(dataset: Any = None, context: str | None = None, tags: Mapping[str, str] | None = None,
              **fields: Any) -> DatasetInput:
    """Record a dataset the active run uses, as ``mlflow.log_input``: an ``mlflow.data`` dataset
    (mlflow itself is not needed), any object or mapping with ``name`` / ``digest`` /
    ``source_type`` / ``source`` / ``schema`` / ``profile``, or those as keywords. ``context``
    ("training", "evaluation", ...) becomes the ``mlflow.data.context`` input tag."""
    item = dataset_input(dataset, context, tags, **fields)
    get_client().log_inputs(_current().run_id, [item])
    return item


def log_artifact(local_path: str | os.PathLike[str], artifact_path: str | None = None) -> ArtifactRecord:
    return get_client().log_artifact(_current().run_id, local_path, artifact_path)


def log_model(local_path: str | os.PathLike[str], name: str | None = None, *, model_type: str = "",
              params: Mapping[str, Any] | None = None, tags: Mapping[str, Any] | None = None) -> LoggedModelRecord:
    """Log a saved model directory (or file) as an MLflow 3 LoggedModel of the active run
    (see :meth:`TrackingClient.log_model`)."""
    return get_client().log_model(_current().run_id, local_path, name, model_type=model_type, params=params,
                                  tags=tags)


def log_artifacts(local_dir: str | os.PathLike[str], artifact_path: str | None = None) -> list[ArtifactRecord]:
    return get_client().log_artifacts(_current().run_id, local_dir, artifact_path)


def log_dict(obj: Any, artifact_file: str) -> ArtifactRecord:
    return get_client().log_dict(_current().run_id, obj, artifact_file)


def log_text(text: str, artifact_file: str) -> ArtifactRecord:
    return get_client().log_text(_current().run_id, text, artifact_file)


def log_figure(figure: Any, artifact_file: str) -> ArtifactRecord:
    """Store a matplotlib figure as PNG; raises ImportError naming matplotlib if it is not installed."""
    return get_client().log_figure(_current().run_id, figure, artifact_file)


def flush(timeout: float = 30.0) -> int:
    """Send everything buffered and wait up to ``timeout`` s; returns events still unacknowledged."""
    return get_client().flush(timeout)


# internals ---------------------------------------------------------------------------------


def _current() -> ActiveRun:
    """The active run, starting one as MLflow does when a log call comes first."""
    runs = _stack.runs
    return runs[-1] if runs else start_run()


def _ensure_experiment(name: str) -> str:
    """Resolve (and create if needed) an experiment once per process and name."""
    client = get_client()
    with _lock:
        experiment_id = _created_experiments.get(name)
        if experiment_id is None:
            experiment_id = _created_experiments[name] = client.create_experiment(name)
        return experiment_id


def _status_for(exc_type: type[BaseException] | None) -> str:
    if exc_type is None:
        return "FINISHED"
    return "KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED"


def _end(run: ActiveRun, status: str) -> None:
    runs = _stack.runs
    client = get_client()
    if run.attached:
        client.flush(0)
    else:
        client.set_terminated(run.run_id, status)
    runs.remove(run)


def _end_through(run: ActiveRun, status: str) -> None:
    """End ``run`` and any runs still open inside it (innermost first); no-op if it already ended."""
    runs = _stack.runs
    if run not in runs:
        return
    while runs and runs[-1] is not run:
        _end(runs[-1], status)
    _end(run, status)


def _runs_attached_after_fork_in_child() -> None:
    """A forked child (a DataLoader worker) logs into the runs its parent has open, but they stay
    the parent's to end: in the child they are attached, so its exit does not end them."""
    for run in _stack.runs:
        run.attached = True


os.register_at_fork(after_in_child=_runs_attached_after_fork_in_child)


def _hook_exit() -> None:
    """(Re-)register the exit hook after the client's own ``close``, so that it runs before it."""
    atexit.unregister(_end_runs_at_exit)
    atexit.register(_end_runs_at_exit)


def _end_runs_at_exit() -> None:
    """Runs never ended explicitly end with the interpreter: FAILED after an uncaught exception."""
    exc = getattr(sys, "last_value", None)
    status = "FINISHED" if exc is None else _status_for(type(exc))
    while _stack.runs:
        try:
            _end(_stack.runs[-1], status)
        except Exception:  # interpreter exit: never raise from here
            _stack.runs.pop()
