import numpy as np

from trackstream.schemas import MetricBatch
from trackstream.consumers.materializer import AggregateState, Materializer, RejectReason
from trackstream.consumers.run_state import FAILED, FINALIZER_WRITER_PREFIX, FINALIZING, FINISHED, RunState
from tests.unit.consumers.events import EventLog


class EmptyStateReader:
    """Nothing materialized yet; records what it was asked for."""

    def __init__(self, states=None):
        self.states = states or {}
        self.calls = []

    def load(self, before, aggregates):
        self.calls.append((dict(before), dict(aggregates)))
        return {a: self.states[a] for a in aggregates if a in self.states}


def reasons(rows):
    return [r[2] for r in rows.rows["rejects"]]


def test_run_events_become_rows_of_their_tables():
    log = EventLog()
    log.run_created("r1", tags=[{"key": "team", "value": "a"}])
    log.add("params_set", run_id="r1", params=[{"key": "lr", "value": "0.1"}])
    log.add("tags_set", run_id="r1", tags=[{"key": "stage", "value": "dev"}])
    log.metrics("r1", 10)
    rows = Materializer(EmptyStateReader()).process(log.messages)
    assert len(rows.rows["runs"]) == 1
    assert [r[1:3] for r in rows.rows["params"]] == [("lr", "0.1")]
    assert sorted(r[1] for r in rows.rows["tags"]) == ["stage", "team"]
    assert rows.metric_points == 10
    assert len(rows.rows["events"]) == 4
    assert not rows.rows["rejects"]


def test_state_is_loaded_once_per_batch_as_of_the_first_offset_of_each_partition():
    log = EventLog(partition=3)
    log.raw(b"junk")
    log.run_created("r1")
    log.metrics("r1", 2)
    reader = EmptyStateReader()
    Materializer(reader).process(log.messages)
    assert reader.calls == [({3: 1}, {"r1": "run"})]


def test_one_state_read_serves_every_partition_and_kind_of_a_batch():
    runs, experiments = EventLog(partition=0), EventLog(partition=1)
    runs.metrics("r0", 1)  # offset 0
    runs.run_created("r1")  # offset 1
    experiments.raw(b"junk")
    experiments.add("experiment_created", experiment_id="7", name="x", artifact_location="a", tags=[])
    reader = EmptyStateReader()
    Materializer(reader).process(runs.messages + experiments.messages)
    assert reader.calls == [({0: 0, 1: 1}, {"7": "experiment", "r0": "run", "r1": "run"})]


def test_garbage_and_tombstones_are_rejected_with_reason_and_raw_bytes():
    log = EventLog()
    log.raw(b"\x00\x01garbage", key=b"k")
    log.raw(None)
    rows = Materializer(EmptyStateReader()).process(log.messages)
    assert reasons(rows) == [RejectReason.UNDECODABLE, RejectReason.UNDECODABLE]
    assert rows.rows["rejects"][0][7]  # base64 of the original bytes kept for inspection
    assert rows.rows["rejects"][0][6] == "k"


def test_unknown_schema_fingerprint_is_its_own_reason():
    log = EventLog()
    log.raw(b"\xc3\x01" + b"\x99" * 8 + b"\x00")
    rows = Materializer(EmptyStateReader()).process(log.messages)
    assert reasons(rows) == [RejectReason.UNKNOWN_SCHEMA]


def test_events_for_an_unknown_run_are_rejected():
    log = EventLog()
    log.metrics("ghost", 5)
    rows = Materializer(EmptyStateReader()).process(log.messages)
    assert reasons(rows) == [RejectReason.UNKNOWN_RUN]
    assert rows.metric_points == 0


def test_param_conflict_keeps_first_value_and_records_both():
    log = EventLog()
    log.run_created("r1")
    log.add("params_set", run_id="r1", params=[{"key": "lr", "value": "0.1"}])
    log.add("params_set", run_id="r1", params=[{"key": "lr", "value": "0.1"}, {"key": "bs", "value": "8"}])
    log.add("params_set", run_id="r1", params=[{"key": "lr", "value": "0.2"}])
    rows = Materializer(EmptyStateReader()).process(log.messages)
    assert [(r[1], r[2]) for r in rows.rows["params"]] == [("lr", "0.1"), ("bs", "8")]
    assert reasons(rows) == [RejectReason.PARAM_CONFLICT]
    detail = rows.rows["rejects"][0][3]
    assert '"old_value": "0.1"' in detail and '"new_value": "0.2"' in detail


def test_param_conflict_with_a_value_materialized_earlier():
    log = EventLog()
    log.add("params_set", run_id="r1", params=[{"key": "lr", "value": "0.3"}], seq=5)
    state = AggregateState(run=RunState("r1", "0"), params={"lr": "0.1"}, writer_seqs={"w1": 4})
    rows = Materializer(EmptyStateReader({"r1": state})).process(log.messages)
    assert reasons(rows) == [RejectReason.PARAM_CONFLICT]
    assert not rows.rows["params"]


def test_redelivered_event_with_an_old_sequence_is_dropped():
    log = EventLog()
    log.run_created("r1")
    log.metrics("r1", 4, seq=2)
    log.metrics("r1", 4, seq=2)
    rows = Materializer(EmptyStateReader()).process(log.messages)
    assert rows.metric_points == 4
    assert rows.counts["duplicates"] == 1


def test_sequences_are_per_writer():
    log = EventLog()
    log.run_created("r1")
    log.metrics("r1", 3, seq=2)
    log.add("metrics_logged", writer_id="w2", seq=1, run_id="r1",
            **{"count": 0, "keys": [], "key_index": b"", "steps": b"", "timestamps": b"", "values": b""})
    rows = Materializer(EmptyStateReader()).process(log.messages)
    assert rows.counts["duplicates"] == 0


def test_sequence_gap_is_recorded_and_the_event_still_applied():
    log = EventLog()
    log.run_created("r1")
    log.metrics("r1", 3, seq=5)
    rows = Materializer(EmptyStateReader()).process(log.messages)
    assert reasons(rows) == [RejectReason.SEQUENCE_GAP]
    assert "3 event(s) missing" in rows.rows["rejects"][0][3]
    assert rows.metric_points == 3


def test_writes_to_a_deleted_run_are_rejected_until_restored():
    log = EventLog()
    log.run_created("r1")
    log.add("run_deleted", run_id="r1")
    log.metrics("r1", 2)
    log.add("run_restored", run_id="r1")
    log.metrics("r1", 3)
    rows = Materializer(EmptyStateReader()).process(log.messages)
    assert reasons(rows) == [RejectReason.RUN_DELETED]
    assert rows.metric_points == 3


def test_finalize_waits_for_every_manifest_artifact():
    log = EventLog()
    log.run_created("r1")
    manifest = [{"path": p, "size": 1, "sha256": "x"} for p in ("a.bin", "b.bin")]
    log.add("artifact_committed", run_id="r1", path="a.bin", size=1, sha256="x", uri="file:///a")
    log.add("finalize_requested", run_id="r1", end_time_ms=99, manifest=manifest)
    m = Materializer(EmptyStateReader())
    rows = m.process(log.messages)
    last_run = rows.rows["runs"][-1]
    assert last_run[6] == FINALIZING and last_run[11] == ["b.bin"]
    log2 = EventLog()
    log2.messages = list(log.messages)
    log2._seq = dict(log._seq)
    commit = log2.add("artifact_committed", run_id="r1", path="b.bin", size=1, sha256="x", uri="file:///b")
    rows = m.process([commit])
    assert rows.rows["runs"][-1][6] == FINISHED and rows.rows["runs"][-1][11] == []


def test_experiment_created_twice_with_same_name_is_idempotent():
    log = EventLog()
    log.add("experiment_created", experiment_id="7", name="demo", artifact_location="", tags=[])
    log.add("experiment_created", experiment_id="7", name="demo", artifact_location="", tags=[], writer_id="w2")
    log.add("experiment_renamed", experiment_id="7", new_name="demo2")
    rows = Materializer(EmptyStateReader()).process(log.messages)
    assert [r[1] for r in rows.rows["experiments"]] == ["demo", "demo2"]
    assert not rows.rows["rejects"]


def test_experiment_tag_deleted_removes_only_that_tag_and_replays_to_the_same_rows():
    log = EventLog()
    log.add("experiment_created", experiment_id="7", name="demo", artifact_location="",
            tags=[{"key": "owner", "value": "me"}])
    log.add("experiment_tag_set", experiment_id="7", key="stage", value="prod")
    log.add("experiment_tag_deleted", experiment_id="7", key="owner")
    log.add("experiment_tag_deleted", experiment_id="7", key="never-set")
    rows = Materializer(EmptyStateReader()).process(log.messages)
    assert [r[6] for r in rows.rows["experiments"]] == [{"owner": "me"}, {"owner": "me", "stage": "prod"},
                                                       {"stage": "prod"}, {"stage": "prod"}]
    assert not rows.rows["rejects"]
    replay = Materializer(EmptyStateReader())
    assert replay.process(log.messages).rows["experiments"] == rows.rows["experiments"]
    redelivered = replay.process(log.messages[2:])  # after a crash before the offsets were committed
    assert not redelivered.rows["experiments"] and redelivered.counts["duplicates"] == 2


def test_metrics_table_is_columnar_with_dictionary_keys():
    log = EventLog()
    log.run_created("r1")
    log.run_created("r2")
    log.metrics("r1", 5, key="loss")
    log.metrics("r2", 3, key="acc")
    table = Materializer(EmptyStateReader()).process(log.messages).metrics_table()
    assert table.num_rows == 8
    assert table.column("run_id").to_pylist() == ["r1"] * 5 + ["r2"] * 3
    assert table.column("key").to_pylist() == ["loss"] * 5 + ["acc"] * 3
    assert table.column("src_offset").to_pylist() == [2] * 5 + [3] * 3


def test_a_batch_reports_every_run_it_changed():
    log = EventLog()
    for run_id in ("r1", "r2", "r3", "r4", "untouched-later"):
        log.run_created(run_id)
    first = Materializer(EmptyStateReader()).process(log.messages)
    assert first.changes().runs == {"r1", "r2", "r3", "r4", "untouched-later"}
    log.messages.clear()
    log.add("params_set", run_id="r2", params=[{"key": "lr", "value": "0.1"}])
    log.add("tags_set", run_id="r3", tags=[{"key": "stage", "value": "dev"}])
    log.metrics("r4", 3)
    states = {r: AggregateState(run=RunState(r, "0")) for r in ("r2", "r3", "r4")}
    assert Materializer(EmptyStateReader(states)).process(log.messages).changes().runs == {"r2", "r3", "r4"}


def _dataset(name: str, digest: str, context: str) -> dict:
    return {"name": name, "digest": digest, "source_type": "local", "source": "{}", "schema": None, "profile": None,
            "tags": [{"key": "mlflow.data.context", "value": context}]}


def test_dataset_inputs_keep_the_first_of_each_name_and_digest_per_run():
    log = EventLog()
    log.run_created("r1")
    log.add("inputs_logged", run_id="r1", datasets=[_dataset("iris", "d1", "training")])
    log.add("inputs_logged", run_id="r1", datasets=[_dataset("iris", "d1", "evaluation"),
                                                    _dataset("iris", "d2", "evaluation")])
    rows = Materializer(EmptyStateReader()).process(log.messages)
    assert [(r[1], r[2], r[8]) for r in rows.rows["dataset_inputs"]] == [("iris", "d1", ["training"]),
                                                                         ("iris", "d2", ["evaluation"])]
    assert rows.changes().runs == {"r1"}


def test_dataset_inputs_already_stored_are_not_stored_again():
    log = EventLog()
    log.add("inputs_logged", run_id="r1", seq=2, datasets=[_dataset("iris", "d1", "evaluation")])
    state = AggregateState(run=RunState("r1", "0", "r", "u", "s", "", "RUNNING", 1, None, "active", "uri"),
                           writer_seqs={"w1": 1}, datasets={("iris", "d1")})
    rows = Materializer(EmptyStateReader({"r1": state})).process(log.messages)
    assert not rows.rows["dataset_inputs"] and not rows.rows["rejects"]


def test_dataset_inputs_of_an_unknown_run_or_breaking_limits_are_rejected():
    log = EventLog()
    log.add("inputs_logged", run_id="nope", datasets=[_dataset("iris", "d1", "training")])
    log.run_created("r1")
    log.add("inputs_logged", run_id="r1", datasets=[_dataset("iris", "d" * 40, "training")])
    rows = Materializer(EmptyStateReader()).process(log.messages)
    assert reasons(rows) == [RejectReason.UNKNOWN_RUN, RejectReason.INVALID_EVENT]
    assert "digest exceeds the maximum length of 36" in rows.rows["rejects"][1][3]


def tables_from(*batches):
    """Every row the batches produce, per table, in a canonical order (plus metric points)."""
    materializer = Materializer(EmptyStateReader())
    tables = {}
    for batch in batches:
        out = materializer.process(batch)
        for table, rows in out.rows.items():
            tables.setdefault(table, []).extend(rows)
        metrics = out.metrics_table()
        if metrics is not None:
            tables.setdefault("metrics", []).extend(tuple(r.values()) for r in metrics.to_pylist())
    return {table: sorted(rows, key=repr) for table, rows in tables.items()}


def test_the_tables_do_not_depend_on_the_order_of_run_and_experiment_partitions():
    runs, experiments = EventLog(partition=0), EventLog(partition=1)
    experiments.add("experiment_created", experiment_id="55", name="e", artifact_location="", tags=[])
    runs.run_created("r1", experiment_id="55")
    runs.add("params_set", run_id="r1", params=[{"key": "lr", "value": "0.1"}])
    runs.metrics("r1", 3)
    experiments.add("experiment_deleted", experiment_id="55")
    runs.run_created("r2", experiment_id="55")  # by a writer that had not seen the delete
    runs.metrics("r2", 2)
    runs.run_created("r3", experiment_id="12345")  # its experiment_created is on a partition not read yet
    runs.metrics("r3", 1)

    run_partition_first = tables_from(runs.messages + experiments.messages)
    experiment_partition_first = tables_from(experiments.messages + runs.messages)
    lagging_on_experiments = tables_from(runs.messages, experiments.messages)
    lagging_on_runs = tables_from(experiments.messages, runs.messages)

    assert run_partition_first == experiment_partition_first == lagging_on_experiments == lagging_on_runs
    assert sorted(r[0] for r in run_partition_first["runs"]) == ["r1", "r2", "r3"]
    assert len(run_partition_first["metrics"]) == 6
    assert "rejects" not in run_partition_first


def test_a_deadline_failure_logged_after_the_last_artifact_leaves_the_run_finished():
    """The finalize timer decides from state that may lag behind the log (a worker outage): its
    FAILED counts only if the run is still FINALIZING at that point of the log."""
    log = EventLog()
    log.run_created("r1")
    manifest = [{"path": "a.bin", "size": 1, "sha256": "x"}]
    log.add("finalize_requested", run_id="r1", end_time_ms=99, manifest=manifest)
    log.add("artifact_committed", run_id="r1", path="a.bin", size=1, sha256="x", uri="file:///a")
    log.add("run_status_changed", writer_id=f"{FINALIZER_WRITER_PREFIX}-abc", seq=1, run_id="r1", status=FAILED,
            end_time_ms=5000)
    rows = Materializer(EmptyStateReader()).process(log.messages)
    assert rows.rows["runs"][-1][6] == FINISHED
    assert len(rows.rows["events"]) == 4  # the decision stays in the log's audit trail


def test_a_deadline_failure_of_a_run_still_finalizing_fails_it_naming_what_is_missing():
    log = EventLog()
    log.run_created("r1")
    log.add("finalize_requested", run_id="r1", end_time_ms=99, manifest=[{"path": "a.bin", "size": 1, "sha256": "x"}])
    log.add("run_status_changed", writer_id=f"{FINALIZER_WRITER_PREFIX}-abc", seq=1, run_id="r1", status=FAILED,
            end_time_ms=5000)
    rows = Materializer(EmptyStateReader()).process(log.messages)
    assert rows.rows["runs"][-1][6] == FAILED and rows.rows["runs"][-1][11] == ["a.bin"]


def test_a_log_batch_event_materializes_its_params_points_and_tags_together():
    log = EventLog()
    log.run_created("r1")
    batch = MetricBatch(["loss"], np.zeros(3, np.uint32), np.arange(3), np.arange(3) + 1000, np.arange(3) * 0.5)
    log.add("metrics_logged", run_id="r1", params=[{"key": "lr", "value": "0.1"}],
            tags=[{"key": "mlflow.runName", "value": "renamed"}], **batch.to_record_fields())
    rows = Materializer(EmptyStateReader()).process(log.messages)
    assert rows.metric_points == 3
    assert [r[1:3] for r in rows.rows["params"]] == [("lr", "0.1")]
    assert [r[1:3] for r in rows.rows["tags"]] == [("mlflow.runName", "renamed")]
    assert rows.rows["runs"][-1][2] == "renamed"
    assert not rows.rows["rejects"]


def test_a_log_batch_event_with_a_conflicting_param_is_rejected_whole():
    log = EventLog()
    log.run_created("r1")
    log.add("params_set", run_id="r1", params=[{"key": "lr", "value": "0.1"}])
    batch = MetricBatch(["loss"], np.zeros(2, np.uint32), np.arange(2), np.arange(2), np.arange(2) * 1.0)
    log.add("metrics_logged", run_id="r1", params=[{"key": "lr", "value": "0.2"}, {"key": "bs", "value": "8"}],
            tags=[{"key": "stage", "value": "dev"}], **batch.to_record_fields())
    rows = Materializer(EmptyStateReader()).process(log.messages)
    assert reasons(rows) == [RejectReason.PARAM_CONFLICT]
    assert rows.metric_points == 0
    assert [r[1] for r in rows.rows["params"]] == ["lr"]
    assert not rows.rows["tags"]


def test_a_metrics_logged_v1_event_still_materializes():
    from trackstream.schemas import default_codec
    log = EventLog()
    log.run_created("r1")
    batch = MetricBatch(["loss"], np.zeros(2, np.uint32), np.arange(2), np.arange(2), np.arange(2) * 1.0)
    record = {"event_id": "e" * 32, "writer_id": "old", "seq": 1, "timestamp_ms": 7, "run_id": "r1",
              **batch.to_record_fields()}
    log.raw(default_codec().encode("metrics_logged", record, version=1), key=b"r1")
    rows = Materializer(EmptyStateReader()).process(log.messages)
    assert rows.metric_points == 2
    assert not rows.rows["params"] and not rows.rows["tags"] and not rows.rows["rejects"]


def test_a_retried_request_right_after_its_first_attempt_is_dropped():
    log = EventLog()
    log.run_created("r1")
    log.metrics("r1", 3, seq=1, writer_id="req-aaa")
    log.metrics("r1", 3, seq=1, writer_id="req-aaa")  # the client's retry: same identity
    rows = Materializer(EmptyStateReader()).process(log.messages)
    assert rows.metric_points == 3
    assert rows.counts["duplicates"] == 1 and not rows.rows["rejects"]


def request_tag(log, writer_id, key, value, seq=1):
    """A tags_set event stamped from a request's identity (writer ``req-...``)."""
    return log.add("tags_set", run_id="r1", tags=[{"key": key, "value": value}], seq=seq, writer_id=writer_id)


def test_a_request_repeated_after_another_write_to_the_run_is_applied_again():
    log = EventLog()
    log.run_created("r1")
    for writer, value in (("req-aaa", "a"), ("req-bbb", "b"), ("req-aaa", "a")):
        request_tag(log, writer, "phase", value)
    rows = Materializer(EmptyStateReader()).process(log.messages)
    assert [r[2] for r in rows.rows["tags"]] == ["a", "b", "a"]
    assert rows.counts["duplicates"] == 0 and not rows.rows["rejects"]


def test_a_retry_applies_only_the_events_its_first_attempt_did_not_store():
    log = EventLog()
    log.run_created("r1")
    log.add("params_set", run_id="r1", params=[{"key": "lr", "value": "0.1"}], seq=1, writer_id="req-aaa")
    log.add("params_set", run_id="r1", params=[{"key": "lr", "value": "0.1"}], seq=1, writer_id="req-aaa")
    request_tag(log, "req-aaa", "t", "v", seq=2)
    log.add("params_set", run_id="r1", params=[{"key": "lr", "value": "0.1"}], seq=1, writer_id="req-aaa")
    rows = Materializer(EmptyStateReader()).process(log.messages)
    assert rows.counts["duplicates"] == 2
    assert [r[1] for r in rows.rows["tags"]] == ["t"] and not rows.rows["rejects"]


def test_the_last_request_of_a_run_comes_from_the_loaded_state():
    log = EventLog()
    log.metrics("r1", 3, seq=1, writer_id="req-aaa")
    state = AggregateState(run=RunState("r1", "0"), last_writer="req-aaa", last_writer_seq=1)
    rows = Materializer(EmptyStateReader({"r1": state})).process(log.messages)
    assert rows.metric_points == 0 and rows.counts["duplicates"] == 1
