"""ts.search_runs / ts.get_run / ts.get_metric_history against a real server, with data logged
through the SDK straight to Kafka; every read comes right after the writes it must see."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pandas as pd
import pytest

import trackstream as ts
from trackstream.errors import InvalidInput, NotFound
from trackstream.producer.client import TrackingClient
from trackstream.read_protocol import WRITTEN_HEADER
from trackstream.reading import HttpReader
from tests.integration.harness import mlflow_call, mlflow_refusal, running_server

mlflow = pytest.importorskip("mlflow")


@pytest.fixture(scope="module")
def server(kafka_bootstrap, tmp_path_factory):
    with running_server(kafka_bootstrap, tmp_path_factory.mktemp("reads"), "rd") as handle:
        yield handle


@pytest.fixture(scope="module")
def sdk(server):
    """The process-wide client logging to the server's topic; reads go to the server's URL."""
    client = TrackingClient(server.settings)
    ts.set_client(client)
    yield client
    ts.set_client(None)
    client.close()


def test_get_run_right_after_logging_sees_every_write(sdk):
    ts.set_experiment(f"reads-{uuid.uuid4().hex[:6]}")
    with ts.start_run(run_name="fresh") as run:
        ts.log_params({"lr": 0.1, "layers": 3})
        ts.set_tag("team", "core")
        for step in range(50):
            ts.log_metric("loss", 1 / (step + 1), step=step)
        got = ts.get_run(run.run_id)  # no sleep, no retry: the read waits for the SDK's marks
        assert got.info.status == "RUNNING" and got.info.run_name == "fresh"
        assert got.params == {"lr": "0.1", "layers": "3"}
        assert got.tags["team"] == "core"
        assert got.metrics["loss"] == pytest.approx(1 / 50)
    ended = ts.get_run(run.run_id)
    assert ended.info.status == "FINISHED" and ended.info.end_time is not None


def test_get_metric_history_returns_every_point_as_numpy_columns(sdk):
    steps = np.arange(20_000, dtype=np.int64)
    values = np.sin(steps / 100.0)
    values[7] = np.nan
    with ts.start_run() as run:
        sdk.log_metric_arrays(run.run_id, "wave", values, steps, timestamps_ms=steps + 1_000)
        history = ts.get_metric_history(run.run_id, "wave")
    assert history.steps.dtype == np.int64 and history.values.dtype == np.float64
    np.testing.assert_array_equal(history.steps, steps)
    np.testing.assert_array_equal(history.values, values)
    np.testing.assert_array_equal(history.timestamps, steps + 1_000)
    assert len(ts.get_metric_history(run.run_id, "never-logged")) == 0


def test_search_runs_returns_the_dataframe_mlflow_search_runs_returns(sdk, server):
    experiment_id = ts.set_experiment(f"search-{uuid.uuid4().hex[:6]}")
    for i, acc in enumerate([0.2, 0.9, 0.6]):
        with ts.start_run(run_name=f"r{i}"):
            ts.log_metric("acc", acc)
            ts.log_param("seed", i)
            if i == 1:
                ts.set_tag("best", "yes")
    ours = ts.search_runs(filter_string="metrics.acc > 0.5", order_by=["metrics.acc DESC"])
    assert list(ours["metrics.acc"]) == [0.9, 0.6] and list(ours["params.seed"]) == ["1", "2"]

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(server.settings.server_url)
    try:
        theirs = mlflow.search_runs(experiment_ids=[experiment_id], filter_string="metrics.acc > 0.5",
                                    order_by=["metrics.acc DESC"])
    finally:
        mlflow.set_tracking_uri(previous)
    info = ["run_id", "experiment_id", "status", "artifact_uri", "start_time", "end_time"]
    assert list(theirs.columns[:6]) == info
    pd.testing.assert_frame_equal(ours, theirs[info + sorted(theirs.columns[6:])])
    everything = ts.search_runs(experiment_ids=[experiment_id], max_results=2, order_by=["attributes.run_name"])
    assert list(everything["tags.mlflow.runName"]) == ["r0", "r1"]


def test_reads_name_what_is_wrong(sdk, server):
    with pytest.raises(NotFound, match="not found"):
        ts.get_run(uuid.uuid4().hex)
    with pytest.raises(InvalidInput, match="metrics.nope"):
        ts.search_runs(filter_string="metrics.nope >>> 1")
    other_topic = HttpReader(server.settings.server_url, extra_headers=lambda: {WRITTEN_HEADER: "elsewhere;0:5"})
    with pytest.raises(InvalidInput, match="'elsewhere'.*TRACKSTREAM_TOPIC"):
        other_topic.runs()


def test_mlflow_writes_are_checked_against_what_the_sdk_changed_directly(sdk, server):
    """The SDK appends to Kafka, not through the server: the server's cached write state of a run
    must still learn of it (a param's first value, a deletion)."""
    url = server.settings.server_url
    kept, deleted = (mlflow_call(url, "runs/create", {"experiment_id": "0"})["run"]["info"]["run_id"] for _ in range(2))
    for run_id in (kept, deleted):  # the server now holds both runs' write state
        mlflow_call(url, "runs/log-metric", {"run_id": run_id, "key": "loss", "value": 1.0, "step": 0,
                                             "timestamp": 1_700_000_000_000})
    sdk.log_param(kept, "lr", 0.1)
    sdk.delete_run(deleted)
    ts.get_run(kept)  # waits for the SDK's writes to be materialized
    for path, body in (("runs/log-parameter", {"run_id": kept, "key": "lr", "value": "0.2"}),
                       ("runs/log-metric", {"run_id": deleted, "key": "loss", "value": 2.0, "step": 1,
                                            "timestamp": 1_700_000_000_001})):
        assert mlflow_refusal(url, path, body) == (400, "INVALID_PARAMETER_VALUE"), path


def test_a_run_read_from_the_servers_cache_shows_its_own_writes_and_what_the_sdk_wrote_directly(sdk, server):
    """The server answers runs/get of a run it has read before from its cache, patched with its own
    acknowledged writes (no wait for the worker); a write that bypassed it must still show."""
    url = server.settings.server_url
    run_id = mlflow_call(url, "runs/create", {"experiment_id": "0"})["run"]["info"]["run_id"]

    def log_loss(step: int) -> None:
        mlflow_call(url, "runs/log-metric", {"run_id": run_id, "key": "loss", "value": step / 10, "step": step,
                                             "timestamp": 1_700_000_000_000 + step})

    def get() -> dict:
        run = mlflow_call(url, f"runs/get?run_id={run_id}")["run"]
        return {"metrics": {m["key"]: m["step"] for m in run["data"]["metrics"]},
                "tags": {t["key"]: t["value"] for t in run["data"]["tags"]}, "params": run["data"].get("params", [])}

    log_loss(0)
    assert get()["metrics"] == {"loss": 0}  # now cached
    for step in range(1, 20):
        log_loss(step)
        mlflow_call(url, "runs/set-tag", {"run_id": run_id, "key": "step", "value": str(step)})
        got = get()
        assert got["metrics"] == {"loss": step} and got["tags"]["step"] == str(step)
    sdk.log_metric(run_id, "acc", 0.5, step=7)
    sdk.set_tag(run_id, "via", "sdk")
    ts.get_run(run_id)  # waits for the SDK's writes to be materialized
    got = get()  # no marks sent: the server's cached entry must have been forgotten
    assert got["metrics"] == {"loss": 19, "acc": 7} and got["tags"]["via"] == "sdk"
    log_loss(20)
    mlflow_call(url, "runs/log-parameter", {"run_id": run_id, "key": "lr", "value": "0.1"})
    got = get()
    assert got["metrics"] == {"loss": 20, "acc": 7} and got["params"] == [{"key": "lr", "value": "0.1"}]


def test_concurrent_writers_of_one_run_each_read_their_own_latest_write(sdk, server):
    """Four clients log steps of one metric to one run and read the run after every write, while
    the SDK writes to it straight to Kafka: the cached run is patched, kept and forgotten under them,
    and no read may show less than the reader's own last write."""
    from concurrent.futures import ThreadPoolExecutor

    url = server.settings.server_url
    run_id = mlflow_call(url, "runs/create", {"experiment_id": "0"})["run"]["info"]["run_id"]

    def client(worker: int) -> list[str]:
        problems = []
        for i in range(60):
            step = i * 4 + worker
            mlflow_call(url, "runs/log-metric", {"run_id": run_id, "key": "loss", "value": float(step), "step": step,
                                                 "timestamp": 1_700_000_000_000 + step})
            mlflow_call(url, "runs/set-tag", {"run_id": run_id, "key": f"w{worker}", "value": str(i)})
            run = mlflow_call(url, f"runs/get?run_id={run_id}")["run"]
            seen = {m["key"]: m["step"] for m in run["data"]["metrics"]}.get("loss", -1)
            tag = {t["key"]: t["value"] for t in run["data"]["tags"]}.get(f"w{worker}")
            if seen < step or tag != str(i):
                problems.append(f"client {worker} wrote step {step} / tag {i}, read step {seen} / tag {tag}")
        return problems

    with ThreadPoolExecutor(5) as pool:
        clients = [pool.submit(client, w) for w in range(4)]
        for i in range(30):
            sdk.log_metric(run_id, "sdk", float(i), step=i)
            sdk.flush()
            time.sleep(0.02)
        problems = [p for c in clients for p in c.result()]
    assert problems == []
    ts.get_run(run_id)  # the SDK's writes are stored now; a plain read must show them
    run = mlflow_call(url, f"runs/get?run_id={run_id}")["run"]
    assert {m["key"]: m["step"] for m in run["data"]["metrics"]} == {"loss": 239, "sdk": 29}


def test_marks_of_events_stored_before_a_server_restart_do_not_wait(sdk, server):
    """Runs last in this module: it restarts the module's server."""
    with ts.start_run() as run:
        ts.log_metric("x", 1.0)
    ts.get_run(run.run_id)  # materialized now
    marks = sdk.writer.acknowledged_offsets()
    server.stop()
    server.start()
    header = {WRITTEN_HEADER: f"{server.settings.topic};" + ",".join(f"{p}:{o}" for p, o in marks.items())}
    started = time.monotonic()
    got = HttpReader(server.settings.server_url, timeout=60, extra_headers=lambda: header).mlflow_run(run.run_id)
    assert got["info"]["status"] == "FINISHED"
    assert time.monotonic() - started < 10  # not the 30 s read-your-writes timeout
