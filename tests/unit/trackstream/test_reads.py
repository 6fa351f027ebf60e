"""ts.search_runs / get_run / get_metric_history: the pure parts (Run from MLflow JSON, the
DataFrame layout, argument checks, the missing-pandas error)."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

from trackstream import reads
from trackstream.errors import InvalidInput

RUN_JSON = {
    "info": {"run_id": "r1", "run_name": "a", "experiment_id": "7", "user_id": "u", "status": "FINISHED",
             "start_time": "1700000000000", "end_time": 1700000001000, "lifecycle_stage": "active",
             "artifact_uri": "mlflow-artifacts:/7/r1/artifacts"},
    "data": {"metrics": [{"key": "loss", "value": "NaN", "step": 1, "timestamp": 1}],
             "params": [{"key": "lr", "value": "0.1"}], "tags": [{"key": "t", "value": "x"}]},
}


def test_a_run_is_built_from_mlflow_run_json():
    run = reads.run_from_mlflow(RUN_JSON)
    assert run.info.start_time == 1700000000000 and run.info.end_time == 1700000001000
    assert run.params == {"lr": "0.1"} and run.tags == {"t": "x"} and np.isnan(run.metrics["loss"])
    assert run.run_id == "r1"


def test_the_dataframe_has_mlflows_columns_and_fills_gaps_as_mlflow_does():
    running = {"info": dict(RUN_JSON["info"], run_id="r2", status="RUNNING", end_time=None),
               "data": {"metrics": [{"key": "acc", "value": 0.5}], "params": [], "tags": []}}
    frame = reads.runs_dataframe([reads.run_from_mlflow(RUN_JSON), reads.run_from_mlflow(running)])
    assert list(frame.columns) == ["run_id", "experiment_id", "status", "artifact_uri", "start_time", "end_time",
                                   "metrics.acc", "metrics.loss", "params.lr", "tags.t"]
    assert frame["start_time"][0] == pd.Timestamp(1700000000000, unit="ms", tz="UTC")
    assert pd.isna(frame["end_time"][1]) and str(frame["end_time"].dtype).startswith("datetime64")
    assert np.isnan(frame["metrics.acc"][0]) and frame["metrics.acc"][1] == 0.5
    assert pd.isna(frame["params.lr"][1]) and pd.isna(frame["tags.t"][1])  # None, as pandas stores it


def test_search_runs_without_pandas_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match="pip install pandas"):
        reads.search_runs(experiment_ids=["0"])


@pytest.mark.parametrize("kwargs, named", [
    ({"max_results": 0}, "max_results"), ({"run_view_type": "SOME"}, "run_view_type"),
    ({"experiment_ids": "0"}, "experiment_ids"),
])
def test_search_runs_refuses_bad_arguments_before_any_request(kwargs, named):
    with pytest.raises(InvalidInput, match=named):
        reads.search_runs(**kwargs)


def test_reads_refuse_empty_ids():
    with pytest.raises(InvalidInput, match="run_id"):
        reads.get_run("")
    with pytest.raises(InvalidInput, match="key"):
        reads.get_metric_history("r1", "")


class FakeWriter:
    topic = "events.x"

    def __init__(self, offsets):
        self.offsets = offsets

    def acknowledged_offsets(self):
        return dict(self.offsets)


class FakeClient:
    def __init__(self, offsets, unacknowledged=0):
        self.writer = FakeWriter(offsets)
        self.unacknowledged = unacknowledged
        self.flushes = 0

    def flush(self, timeout):
        self.flushes += 1
        return self.unacknowledged


def test_the_written_marks_header_names_the_topic_and_offsets_after_a_flush():
    client = FakeClient({2: 17, 0: 5})
    assert reads.written_marks(client) == {"X-Trackstream-Written": "events.x;0:5,2:17"}
    assert client.flushes == 1


def test_no_client_or_nothing_acknowledged_sends_no_header(caplog):
    assert reads.written_marks(None) == {}
    assert reads.written_marks(FakeClient({}, unacknowledged=3)) == {}
    assert "3 event(s) are not in Kafka yet" in caplog.text
