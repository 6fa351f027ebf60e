"""Turns a batch of raw log messages into rows for every ClickHouse table (pure logic).

Decisions live here — decode, dedupe by writer sequence, param immutability, unknown/deleted
runs, the run state machine — and I/O does not: aggregate state the batch needs is asked for
through a ``StateReader`` *as of the first offset of the batch in that partition*, so that
re-processing a batch after a crash makes exactly the same decisions as the first time.

No decision crosses partitions. A run's events and its experiment's events are keyed
differently, so they live on different partitions whose relative order a lagging worker or a
replay does not preserve; deciding a run by its experiment's state would make the tables depend
on that order. Whether a run's experiment exists and is active is checked where the run is
created (the gateway's runs/create, the SDK's ``create_run``), as MLflow checks it.
"""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping, Protocol

import numpy as np
import pyarrow as pa

from trackstream.consumers.model_state import ModelState
from trackstream.consumers.run_state import FINALIZER_WRITER_PREFIX, RunState
from trackstream.producer.inputs import DatasetInput, dedupe_dataset_inputs
from trackstream.schemas.envelope import is_request_writer
from trackstream.schemas import EXPERIMENT_EVENT_TYPES, MODEL_EVENT_TYPES, DecodedEvent, EventCodec, MetricBatch, default_codec
from trackstream.errors import DecodeError, InvalidInput

MAX_REJECT_RAW_BYTES = 65536
ENVELOPE_FIELDS = ("event_id", "writer_id", "seq", "timestamp_ms", "run_id", "experiment_id", "model_id")


class RejectReason:
    UNDECODABLE = "undecodable"
    UNKNOWN_SCHEMA = "unknown_schema"
    UNKNOWN_RUN = "unknown_run"
    RUN_DELETED = "run_deleted"
    RUN_EXISTS = "run_already_exists"
    PARAM_CONFLICT = "param_conflict"
    INVALID_EVENT = "invalid_event"
    SEQUENCE_GAP = "sequence_gap"
    UNKNOWN_MODEL = "unknown_model"
    MODEL_DELETED = "model_deleted"


@dataclass(frozen=True)
class SourceMessage:
    partition: int
    offset: int
    value: bytes | None
    key: bytes | None = None
    timestamp_ms: int = 0  # the Kafka timestamp


@dataclass
class AggregateState:
    """What the materializer must know about one run, experiment or logged model to decide on its next
    event (``params`` are the run's or the model's)."""

    run: RunState | None = None
    experiment: dict[str, Any] | None = None
    model: ModelState | None = None
    params: dict[str, str] = field(default_factory=dict)
    writer_seqs: dict[str, int] = field(default_factory=dict)
    datasets: set[tuple[str, str]] = field(default_factory=set)  # (name, digest) of the run's inputs
    # The writer of the aggregate's latest event and the highest seq of its trailing events (is_request_retry).
    last_writer: str = ""
    last_writer_seq: int = 0


class StateReader(Protocol):
    def load(self, before: Mapping[int, int], aggregates: Mapping[str, str]) -> dict[str, AggregateState]:
        """State of ``aggregates`` (id -> kind: "run", "experiment" or "model") built from the rows
        of each partition with src_offset < ``before[partition]``. An aggregate's rows all come
        from the one partition its key maps to, so one read serves a batch's partitions."""


# Tables whose rows (run id first) change what a read of the run shows.
RUN_TABLES = ("runs", "params", "tags", "dataset_inputs", "run_model_links")

# Rows that change what a gateway checks writes against (server/mlflow_service.py: a run's
# lifecycle and params, an experiment's lifecycle), by the kind of id in their first column.
WRITE_STATE_TABLES = {"runs": "run", "params": "run", "experiments": "experiment"}
WriteStateChange = tuple[str, str, int, int]  # (kind, id, partition, offset of the changing event)


@dataclass(frozen=True)
class BatchChanges:
    """What one stored batch changed: every run (read caches forget them) and, with the event
    that did it, each change to the state writes are checked against (a gateway that did not
    append that event itself forgets what it cached).

    In process only (the all-in-one server, whose gateway applies its own appends to its run
    cache): ``run_events``, the (partition, offset) of every event that changed each run, and
    ``refused_runs``, the runs an event of the batch was refused for."""

    runs: set[str] = field(default_factory=set)
    write_state: list[WriteStateChange] = field(default_factory=list)
    run_events: dict[str, set[tuple[int, int]]] = field(default_factory=dict)
    refused_runs: set[str] = field(default_factory=set)

    def __or__(self, other: "BatchChanges") -> "BatchChanges":
        run_events = {r: set(e) for r, e in self.run_events.items()}
        for run_id, events in other.run_events.items():
            run_events.setdefault(run_id, set()).update(events)
        return BatchChanges(self.runs | other.runs, self.write_state + other.write_state, run_events,
                            self.refused_runs | other.refused_runs)


@dataclass
class TableRows:
    """Columnar rows per table for one batch; metrics stay as numpy arrays."""

    rows: dict[str, list[tuple]] = field(default_factory=lambda: defaultdict(list))
    metric_parts: list[tuple[str, int, int, MetricBatch]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def run_events(self) -> dict[str, set[tuple[int, int]]]:
        """Every run this batch changes (a reader's cache of run data must forget them), with the
        (partition, offset) of the events that changed it."""
        events: dict[str, set[tuple[int, int]]] = defaultdict(set)
        for run_id, partition, offset, _ in self.metric_parts:
            events[run_id].add((partition, offset))
        for table in RUN_TABLES:
            for row in self.rows.get(table, ()):
                events[row[0]].add((row[-2], row[-1]))
        return events

    def changes(self) -> BatchChanges:
        """What gateways' caches must hear of this batch."""
        run_events = self.run_events()
        return BatchChanges(set(run_events), [
            (kind, row[0], row[-2], row[-1])
            for table, kind in WRITE_STATE_TABLES.items() for row in self.rows.get(table, ())],
            dict(run_events), {row[REJECT_AGGREGATE] for row in self.rows.get("rejects", ()) if row[REJECT_AGGREGATE]})

    def metrics_table(self) -> pa.Table | None:
        if not self.metric_parts:
            return None
        run_ids = sorted({p[0] for p in self.metric_parts})
        run_pos = {r: i for i, r in enumerate(run_ids)}
        all_keys: dict[str, int] = {}
        run_idx, key_idx, steps, stamps, values, parts, offsets = [], [], [], [], [], [], []
        for run_id, partition, offset, batch in self.metric_parts:
            n = len(batch)
            remap = np.array([all_keys.setdefault(k, len(all_keys)) for k in batch.keys], dtype=np.int32)
            run_idx.append(np.full(n, run_pos[run_id], dtype=np.int32))
            key_idx.append(remap.take(batch.key_index) if n else np.empty(0, np.int32))
            steps.append(batch.steps)
            stamps.append(batch.timestamps)
            values.append(batch.values)
            parts.append(np.full(n, partition, dtype=np.uint32))
            offsets.append(np.full(n, offset, dtype=np.uint64))
        return pa.table({
            "run_id": pa.DictionaryArray.from_arrays(pa.array(np.concatenate(run_idx)), pa.array(run_ids)),
            "key": pa.DictionaryArray.from_arrays(pa.array(np.concatenate(key_idx)), pa.array(list(all_keys))),
            "step": pa.array(np.concatenate(steps)),
            "timestamp_ms": pa.array(np.concatenate(stamps)),
            "value": pa.array(np.concatenate(values)),
            "src_partition": pa.array(np.concatenate(parts)),
            "src_offset": pa.array(np.concatenate(offsets)),
        })

    @property
    def metric_points(self) -> int:
        return sum(len(p[3]) for p in self.metric_parts)


# Column order of each table's rows, as in consumers/migrations.
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "events": ("src_partition", "src_offset", "event_type", "schema_version", "event_id", "aggregate_id",
               "writer_id", "seq", "timestamp_ms", "kafka_timestamp_ms", "payload"),
    "experiments": ("experiment_id", "name", "artifact_location", "lifecycle_stage", "creation_time",
                    "last_update_time", "tags", "src_partition", "src_offset"),
    "runs": ("run_id", "experiment_id", "run_name", "user_id", "source_name", "parent_run_id", "status",
             "start_time", "end_time", "lifecycle_stage", "artifact_uri", "missing_artifacts",
             "src_partition", "src_offset"),
    "params": ("run_id", "key", "value", "timestamp_ms", "event_id", "src_partition", "src_offset"),
    "tags": ("run_id", "key", "value", "deleted", "src_partition", "src_offset"),
    "artifacts": ("run_id", "path", "size", "sha256", "uri", "committed_at", "src_partition", "src_offset"),
    "dataset_inputs": ("run_id", "name", "digest", "source_type", "source", "schema", "profile", "tag_keys",
                       "tag_values", "logged_at", "src_partition", "src_offset"),
    "logged_models": ("model_id", "experiment_id", "name", "model_type", "source_run_id", "artifact_location",
                      "status", "status_message", "lifecycle_stage", "creation_timestamp_ms",
                      "last_updated_timestamp_ms", "src_partition", "src_offset"),
    "logged_model_params": ("model_id", "key", "value", "src_partition", "src_offset"),
    "logged_model_tags": ("model_id", "key", "value", "deleted", "src_partition", "src_offset"),
    "logged_model_metrics": ("model_id", "run_id", "key", "value", "step", "timestamp_ms", "dataset_name",
                             "dataset_digest", "src_partition", "src_offset"),
    "logged_model_artifacts": ("model_id", "path", "size", "sha256", "uri", "committed_at", "src_partition",
                               "src_offset"),
    "run_model_links": ("run_id", "direction", "model_id", "step", "src_partition", "src_offset"),
    "rejects": ("src_partition", "src_offset", "reason", "detail", "event_type", "event_id", "aggregate_id",
                "raw_base64"),
}


REJECT_AGGREGATE = TABLE_COLUMNS["rejects"].index("aggregate_id")


def run_row(state: RunState, partition: int, offset: int) -> tuple:
    return (state.run_id, state.experiment_id, state.run_name, state.user_id, state.source_name,
            state.parent_run_id, state.status, state.start_time, state.end_time, state.lifecycle_stage,
            state.artifact_uri, list(state.missing_artifacts), partition, offset)


def model_row(m: ModelState, partition: int, offset: int) -> tuple:
    return (m.model_id, m.experiment_id, m.name, m.model_type, m.source_run_id, m.artifact_location, m.status,
            m.status_message, m.lifecycle_stage, m.creation_timestamp_ms, m.last_updated_timestamp_ms,
            partition, offset)


def experiment_row(exp: dict[str, Any], partition: int, offset: int) -> tuple:
    return (exp["experiment_id"], exp["name"], exp["artifact_location"], exp["lifecycle_stage"],
            exp["creation_time"], exp["last_update_time"], dict(exp["tags"]), partition, offset)


def event_payload_json(event: DecodedEvent) -> str:
    record = event.record
    if event.event_type == "metrics_logged":
        body: dict[str, Any] = {"count": record["count"], "keys": record["keys"],
                                "params": record.get("params", []), "tags": record.get("tags", [])}
    else:
        body = {k: v for k, v in record.items() if k not in ENVELOPE_FIELDS}
    return json.dumps(body, separators=(",", ":"), default=str)


def is_request_retry(state: AggregateState, writer_id: str, seq: int) -> bool:
    """Whether an event stamped from a request's identity (``schemas.envelope.RequestStamp``) repeats one
    the aggregate already has: the same request's events are the aggregate's latest ones, up to this
    seq. So a client's retry is dropped when nothing else was written to the run (experiment, model)
    since its first attempt; a request repeated after another write is applied again (set tag a, b,
    then a again means a). Request writers are not kept in ``writer_seqs``: state stays one pair."""
    return is_request_writer(writer_id) and writer_id == state.last_writer and seq <= state.last_writer_seq


def trailing_seq(state: AggregateState, writer_id: str, seq: int) -> int:
    """``last_writer_seq`` after an event of ``writer_id``: the highest seq of the trailing same-writer events."""
    return max(seq, state.last_writer_seq) if writer_id == state.last_writer else seq


def param_conflicts(params: list[dict[str, str]], known: dict[str, str]) -> list[dict[str, str]]:
    """The params that would change a value already set (params are immutable per key)."""
    return [{"key": p["key"], "old_value": known[p["key"]], "new_value": p["value"]}
            for p in params if p["key"] in known and known[p["key"]] != p["value"]]


class Materializer:
    """Decides what every message of a batch does to the tables; keeps aggregate state between batches."""

    def __init__(self, state_reader: StateReader, codec: EventCodec | None = None,
                 artifact_root: str = "") -> None:
        self._reader = state_reader
        self._codec = codec or default_codec()
        self._artifact_root = artifact_root.rstrip("/")
        self._state: dict[str, AggregateState] = {}

    def forget(self) -> None:
        """Drop cached state (on partition reassignment: another worker may have moved it on)."""
        self._state.clear()

    def process(self, messages: Iterable[SourceMessage]) -> TableRows:
        out = TableRows()
        decoded: list[tuple[SourceMessage, DecodedEvent]] = []
        for msg in messages:
            event = self._decode_or_reject(msg, out)
            if event is not None:
                decoded.append((msg, event))
        self._load_missing_state(decoded)
        for msg, event in decoded:
            self._apply(msg, event, out)
        return out

    def _decode_or_reject(self, msg: SourceMessage, out: TableRows) -> DecodedEvent | None:
        try:
            if msg.value is None:
                raise DecodeError("empty message (tombstone)")
            event = self._codec.decode(msg.value)
            event.aggregate_id  # noqa: B018 - raises KeyError on a record without its id
            return event
        except DecodeError as exc:
            reason = RejectReason.UNKNOWN_SCHEMA if "unknown schema" in str(exc) else RejectReason.UNDECODABLE
            self._reject(out, msg, reason, str(exc))
            return None

    def _load_missing_state(self, decoded: list[tuple[SourceMessage, DecodedEvent]]) -> None:
        """One read for every aggregate of the batch not in memory yet, as of the batch's start."""
        first_offset: dict[int, int] = {}
        missing: dict[str, str] = {}
        partitions: set[int] = set()
        for msg, event in decoded:
            first_offset.setdefault(msg.partition, msg.offset)
            agg = event.aggregate_id
            if agg not in self._state and agg not in missing:
                missing[agg] = event.aggregate_kind
                partitions.add(msg.partition)
        if not missing:
            return
        loaded = self._reader.load({p: first_offset[p] for p in sorted(partitions)}, dict(sorted(missing.items())))
        for agg in missing:
            self._state[agg] = loaded.get(agg) or AggregateState()

    def _reject(self, out: TableRows, msg: SourceMessage, reason: str, detail: str,
                event: DecodedEvent | None = None) -> None:
        raw = base64.b64encode((msg.value or b"")[:MAX_REJECT_RAW_BYTES]).decode() if event is None else ""
        out.rows["rejects"].append((
            msg.partition, msg.offset, reason, detail,
            event.event_type if event else "", event.record.get("event_id", "") if event else "",
            event.aggregate_id if event else (msg.key or b"").decode("utf-8", "replace"), raw,
        ))
        out.counts["rejects"] += 1

    def _apply(self, msg: SourceMessage, event: DecodedEvent, out: TableRows) -> None:
        rec = event.record
        state = self._state[event.aggregate_id]
        p, o = msg.partition, msg.offset
        out.rows["events"].append((p, o, event.event_type, event.writer_version, rec["event_id"], event.aggregate_id,
                                   rec["writer_id"], rec["seq"], rec["timestamp_ms"], msg.timestamp_ms,
                                   event_payload_json(event)))
        writer, seq = rec["writer_id"], rec["seq"]
        repeat = is_request_retry(state, writer, seq)
        state.last_writer, state.last_writer_seq = writer, trailing_seq(state, writer, seq)
        if not is_request_writer(writer):  # a writer with its own sequence (the SDK, the gateway's own)
            last_seq = state.writer_seqs.get(writer, 0)
            repeat = seq <= last_seq
            if seq > last_seq + 1 and last_seq > 0:
                self._reject(out, msg, RejectReason.SEQUENCE_GAP,
                             f"writer {writer} jumped from seq {last_seq} to {seq}; "
                             f"{seq - last_seq - 1} event(s) missing; this event was applied", event)
            state.writer_seqs[writer] = max(seq, last_seq)
        if repeat:
            out.counts["duplicates"] += 1
            return
        self._apply_by_type(msg, event, state, out)

    def _apply_by_type(self, msg: SourceMessage, event: DecodedEvent, state: AggregateState, out: TableRows) -> None:
        if event.event_type in EXPERIMENT_EVENT_TYPES:
            self._apply_experiment(msg, event, state, out)
        elif event.event_type in MODEL_EVENT_TYPES:
            self._apply_model(msg, event, state, out)
        else:
            self._apply_run(msg, event, state, out)
        out.counts[event.event_type] += 1

    def _apply_experiment(self, msg: SourceMessage, event: DecodedEvent, state: AggregateState,
                          out: TableRows) -> None:
        rec, kind = event.record, event.event_type
        exp = state.experiment
        if kind == "experiment_created":
            if exp is not None:
                if exp["name"] != rec["name"]:
                    self._reject(out, msg, RejectReason.INVALID_EVENT,
                                 f"experiment {rec['experiment_id']} already exists as {exp['name']!r}", event)
                return
            exp = {"experiment_id": rec["experiment_id"], "name": rec["name"],
                   "artifact_location": rec["artifact_location"], "lifecycle_stage": "active",
                   "creation_time": rec["timestamp_ms"], "last_update_time": rec["timestamp_ms"],
                   "tags": {t["key"]: t["value"] for t in rec["tags"]}}
        elif exp is None:
            self._reject(out, msg, RejectReason.INVALID_EVENT, f"unknown experiment {rec['experiment_id']}", event)
            return
        else:
            exp = dict(exp, tags=dict(exp["tags"]), last_update_time=rec["timestamp_ms"])
            if kind == "experiment_renamed":
                exp["name"] = rec["new_name"]
            elif kind == "experiment_tag_set":
                exp["tags"][rec["key"]] = rec["value"]
            elif kind == "experiment_tag_deleted":
                exp["tags"].pop(rec["key"], None)
            elif kind == "experiment_deleted":
                exp["lifecycle_stage"] = "deleted"
            elif kind == "experiment_restored":
                exp["lifecycle_stage"] = "active"
        state.experiment = exp
        out.rows["experiments"].append(experiment_row(exp, msg.partition, msg.offset))

    def _apply_run(self, msg: SourceMessage, event: DecodedEvent, state: AggregateState, out: TableRows) -> None:
        rec, kind = event.record, event.event_type
        p, o = msg.partition, msg.offset
        run = state.run
        if kind == "run_created":
            if run is not None:
                self._reject(out, msg, RejectReason.RUN_EXISTS, f"run {rec['run_id']} was already created", event)
                return
            run = RunState(
                run_id=rec["run_id"], experiment_id=rec["experiment_id"], run_name=rec["run_name"],
                user_id=rec["user_id"], source_name=rec["source_name"], parent_run_id=rec["parent_run_id"] or "",
                start_time=rec["start_time_ms"], artifact_uri=f"{self._artifact_root}/{rec['experiment_id']}/{rec['run_id']}/artifacts",
            )
            state.run = run
            out.rows["runs"].append(run_row(run, p, o))
            for tag in rec["tags"]:
                out.rows["tags"].append((run.run_id, tag["key"], tag["value"], 0, p, o))
            return
        if run is None:
            self._reject(out, msg, RejectReason.UNKNOWN_RUN, f"no run_created seen for run {rec['run_id']}", event)
            return
        if run.is_deleted and kind != "run_restored":
            self._reject(out, msg, RejectReason.RUN_DELETED,
                         f"run {run.run_id} is deleted; {kind} was not applied", event)
            return
        if kind == "metrics_logged":
            self._apply_log_batch(msg, event, state, out)
        elif kind == "params_set":
            self._apply_params(msg, event, state, out)
        elif kind == "tags_set":
            self._apply_tags(msg, rec["tags"], state, out)
        elif kind == "tag_deleted":
            out.rows["tags"].append((run.run_id, rec["key"], "", 1, p, o))
        elif kind == "artifact_committed":
            out.rows["artifacts"].append((run.run_id, rec["path"], rec["size"], rec["sha256"], rec["uri"],
                                          rec["timestamp_ms"], p, o))
            self._set_run(state, run.commit_artifact(rec["path"]), p, o, out, changed_only=True)
        elif kind == "finalize_requested":
            self._set_run(state, run.request_finalize([m["path"] for m in rec["manifest"]], rec["end_time_ms"]),
                          p, o, out)
        elif kind == "run_status_changed" and rec["writer_id"].startswith(FINALIZER_WRITER_PREFIX):
            self._set_run(state, run.fail_finalize_deadline(rec["end_time_ms"]), p, o, out, changed_only=True)
        elif kind == "run_status_changed":
            self._set_run(state, run.with_status(rec["status"], rec["end_time_ms"]), p, o, out)
        elif kind == "run_deleted":
            self._set_run(state, run.delete(), p, o, out)
        elif kind == "run_restored":
            self._set_run(state, run.restore(), p, o, out)
        elif kind == "inputs_logged":
            self._apply_inputs(msg, event, state, out)
        elif kind == "run_models_linked":
            for link in rec["models"]:
                out.rows["run_model_links"].append((run.run_id, rec["direction"], link["model_id"], link["step"], p, o))

    def _apply_model(self, msg: SourceMessage, event: DecodedEvent, state: AggregateState, out: TableRows) -> None:
        rec, kind = event.record, event.event_type
        p, o, at = msg.partition, msg.offset, rec["timestamp_ms"]
        model = state.model
        if kind == "logged_model_created":
            if model is not None:
                self._reject(out, msg, RejectReason.INVALID_EVENT, f"model {rec['model_id']} was already created",
                             event)
                return
            state.model = ModelState(
                model_id=rec["model_id"], experiment_id=rec["experiment_id"], name=rec["name"],
                model_type=rec["model_type"], source_run_id=rec["source_run_id"] or "",
                artifact_location=rec["artifact_location"], creation_timestamp_ms=at, last_updated_timestamp_ms=at)
            out.rows["logged_models"].append(model_row(state.model, p, o))
            for tag in rec["tags"]:
                out.rows["logged_model_tags"].append((rec["model_id"], tag["key"], tag["value"], 0, p, o))
            self._apply_params(msg, event, state, out, "logged_model_params")
            return
        if model is None:
            self._reject(out, msg, RejectReason.UNKNOWN_MODEL, f"no logged_model_created seen for model "
                                                               f"{rec['model_id']}", event)
            return
        if model.is_deleted:
            self._reject(out, msg, RejectReason.MODEL_DELETED, f"model {model.model_id} is deleted; {kind} was not "
                                                               "applied", event)
            return
        new = model
        if kind == "logged_model_params_set":
            self._apply_params(msg, event, state, out, "logged_model_params")
        elif kind == "logged_model_tags_set":
            for tag in rec["tags"]:
                out.rows["logged_model_tags"].append((model.model_id, tag["key"], tag["value"], 0, p, o))
        elif kind == "logged_model_tag_deleted":
            out.rows["logged_model_tags"].append((model.model_id, rec["key"], "", 1, p, o))
        elif kind == "logged_model_metrics_logged":
            for m in rec["metrics"]:
                out.rows["logged_model_metrics"].append((
                    model.model_id, rec["run_id"], m["key"], m["value"], m["step"], m["timestamp_ms"],
                    m["dataset_name"], m["dataset_digest"], p, o))
        elif kind == "logged_model_artifact_committed":
            out.rows["logged_model_artifacts"].append((model.model_id, rec["path"], rec["size"], rec["sha256"],
                                                       rec["uri"], at, p, o))
            new = model.commit_artifact(rec["path"], at)
        elif kind == "logged_model_finalized":
            new = model.finalize(rec["status"], rec["manifest"], at)
        elif kind == "logged_model_deleted":
            new = model.delete(at)
        state.model = new
        if model_row(new, p, o) != model_row(model, p, o):
            out.rows["logged_models"].append(model_row(new, p, o))

    @staticmethod
    def _set_run(state: AggregateState, new: RunState, p: int, o: int, out: TableRows,
                 changed_only: bool = False) -> None:
        old = state.run
        state.run = new
        if changed_only and old is not None and run_row(old, p, o) == run_row(new, p, o):
            return
        out.rows["runs"].append(run_row(new, p, o))

    def _apply_log_batch(self, msg: SourceMessage, event: DecodedEvent, state: AggregateState,
                         out: TableRows) -> None:
        """A log-batch event (``metrics_logged``; from v2 with the request's params and tags): all of it
        or, when its points are malformed or a param changes a known value, none of it."""
        rec = event.record
        try:
            batch = MetricBatch.from_record(rec)
        except DecodeError as exc:
            self._reject(out, msg, RejectReason.INVALID_EVENT, str(exc), event)
            return
        params = rec.get("params") or []
        conflicts = param_conflicts(params, state.params)
        if conflicts:
            self._reject(out, msg, RejectReason.PARAM_CONFLICT,
                         "changing param values is not allowed: " + json.dumps(conflicts), event)
            return
        if params:
            self._apply_params(msg, event, state, out)
        if len(batch):
            out.metric_parts.append((rec["run_id"], msg.partition, msg.offset, batch))
        self._apply_tags(msg, rec.get("tags") or [], state, out)

    @staticmethod
    def _apply_tags(msg: SourceMessage, tags: list[dict[str, str]], state: AggregateState, out: TableRows) -> None:
        p, o = msg.partition, msg.offset
        for tag in tags:
            out.rows["tags"].append((state.run.run_id, tag["key"], tag["value"], 0, p, o))  # type: ignore[union-attr]
            if tag["key"] == "mlflow.runName":
                state.run = replace(state.run, run_name=tag["value"])  # type: ignore[arg-type]
                out.rows["runs"].append(run_row(state.run, p, o))

    def _apply_params(self, msg: SourceMessage, event: DecodedEvent, state: AggregateState, out: TableRows,
                      table: str = "params") -> None:
        """Params of a run (``params``) or of a model (``logged_model_params``): immutable per key."""
        rec = event.record
        conflicts = param_conflicts(rec["params"], state.params)
        for param in rec["params"]:
            key, value = param["key"], param["value"]
            if key not in state.params:
                state.params[key] = value
                if table == "params":
                    out.rows["params"].append((rec["run_id"], key, value, rec["timestamp_ms"], rec["event_id"],
                                               msg.partition, msg.offset))
                else:
                    out.rows[table].append((rec["model_id"], key, value, msg.partition, msg.offset))
        if conflicts:
            self._reject(out, msg, RejectReason.PARAM_CONFLICT,
                         "changing param values is not allowed: " + json.dumps(conflicts), event)

    def _apply_inputs(self, msg: SourceMessage, event: DecodedEvent, state: AggregateState, out: TableRows) -> None:
        """One row per dataset new to the run: MLflow keeps a run's first input of a (name, digest)."""
        rec = event.record
        try:
            inputs = [DatasetInput(d["name"], d["digest"], d["source_type"], d["source"], d["schema"], d["profile"],
                                   tuple((t["key"], t["value"]) for t in d["tags"])) for d in rec["datasets"]]
        except InvalidInput as exc:
            self._reject(out, msg, RejectReason.INVALID_EVENT, str(exc), event)
            return
        for item in dedupe_dataset_inputs(inputs, state.datasets):
            out.rows["dataset_inputs"].append((
                rec["run_id"], item.name, item.digest, item.source_type, item.source, item.schema or "",
                item.profile or "", [k for k, _ in item.tags], [val for _, val in item.tags], rec["timestamp_ms"],
                msg.partition, msg.offset))
