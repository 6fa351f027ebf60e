"""TrackingReader: the read side. Parameterized SQL over the materialized tables, nothing else."""

from __future__ import annotations

import json

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from clickhouse_connect.driver.client import Client

from trackstream.consumers.store import check_database_name
from trackstream.server.run_cache import RunDataCache
from trackstream.server.search import RUN_INFO_COLUMNS, paginate
from trackstream.errors import InvalidInput, NotFound

READ_ONLY_SETTINGS = {"readonly": 1}
ROLLUP_SHIFT = 6                      # metric_rollups blocks: 2**6 = 64 steps (migration 003)
ROLLUP_STEPS = 1 << ROLLUP_SHIFT
DOWNSAMPLED_COLUMNS = ("bucket", "step_min", "step_max", "min", "max", "last", "points")


LIFECYCLE_EVENTS = ("run_created", "run_status_changed", "finalize_requested", "artifact_committed", "run_deleted",
                    "run_restored")


def lifecycle_entry(event_type: str, timestamp_ms: int, kafka_timestamp_ms: int, payload: str) -> dict[str, Any]:
    """One lifecycle event for the UI: what happened (a status, a manifest, an artifact path) and when
    the client made it and the log took it."""
    body = json.loads(payload or "{}")
    detail: Any = None
    if event_type == "run_status_changed":
        detail = body.get("status")
    elif event_type == "finalize_requested":
        detail = [entry.get("path") for entry in body.get("manifest") or []]
    elif event_type == "artifact_committed":
        detail = body.get("path")
    return {"event_type": event_type, "timestamp_ms": timestamp_ms, "logged_ms": kafka_timestamp_ms, "detail": detail}


def _rows_as_dicts(result: Any) -> list[dict[str, Any]]:
    return [dict(zip(result.column_names, row)) for row in result.result_rows]


@dataclass(frozen=True)
class HistoryPosition:
    """Where a metric-history page ended: its last (step, timestamp) and how many points at exactly
    that (step, timestamp) have been sent so far."""

    step: int
    timestamp_ms: int
    seen_at_position: int


def in_value_order_within_ties(history: pa.Table) -> pa.Table:
    """A history that comes in (step, timestamp) order, put in (step, timestamp, value) order: only
    rows sharing a (step, timestamp) need sorting, and most histories have none (then no sort at all)."""
    steps, stamps = history.column("step").to_numpy(), history.column("timestamp_ms").to_numpy()
    if not ((steps[1:] == steps[:-1]) & (stamps[1:] == stamps[:-1])).any():
        return history
    return history.take(np.lexsort((history.column("value").to_numpy(), stamps, steps)))


# The row condition of a cut of the log; its parameters (per partition, the last offset kept) come from log_cut.
LOG_CUT = ("toInt64(src_offset) <= transform(src_partition, {cut_p:Array(UInt32)}, {cut_o:Array(Int64)}, "
           "toInt64(-1))")


def log_cut(client: Client, db: str, as_of_ms: int) -> tuple[str, dict[str, Any]]:
    """A row condition (and its parameters) keeping only rows of events whose Kafka timestamp is at or
    before ``as_of_ms`` — the same cut `trackstream replay --until` makes."""
    cutoffs = client.query(
        f"SELECT src_partition, max(src_offset) FROM {db}.events WHERE kafka_timestamp_ms <= {{t:Int64}} "
        f"GROUP BY src_partition", parameters={"t": as_of_ms}).result_rows
    return LOG_CUT, {"cut_p": [int(p) for p, _ in cutoffs], "cut_o": [int(o) for _, o in cutoffs]}


@dataclass(frozen=True)
class StateSources:
    """Table expressions for the current state, or for the state as of a moment in the log."""

    runs: str
    params: str
    tags: str
    latest_metrics: str
    metrics: str
    parameters: dict[str, Any]
    dataset_inputs: str = ""


class TrackingReader:
    def __init__(self, client: Client, database: str) -> None:
        self.client = client
        self.db = check_database_name(database)

    def sources(self, as_of_ms: int | None = None) -> StateSources:
        """With ``as_of_ms``: only rows of events whose Kafka timestamp is at or before it — the same
        cut `trackstream replay --until` makes, read straight from the versioned tables."""
        db = self.db
        if as_of_ms is None:
            return StateSources(f"{db}.runs_latest", f"{db}.params", f"{db}.tags_latest",
                                f"(SELECT run_id, key, max(latest) AS latest FROM {db}.latest_metrics GROUP BY run_id, key)",
                                f"{db}.metrics", {}, f"{db}.dataset_inputs")
        cut, cut_params = log_cut(self.client, db, as_of_ms)
        return StateSources(
            runs=f"(SELECT * FROM {db}.runs WHERE {cut} ORDER BY run_id, src_offset DESC LIMIT 1 BY run_id)",
            params=f"(SELECT * FROM {db}.params WHERE {cut})",
            tags=(f"(SELECT run_id, key, value FROM (SELECT * FROM {db}.tags WHERE {cut} "
                  f"ORDER BY run_id, key, src_offset DESC LIMIT 1 BY run_id, key) WHERE deleted = 0)"),
            latest_metrics=(f"(SELECT run_id, key, max((step, timestamp_ms, value)) AS latest FROM {db}.metrics "
                            f"WHERE {cut} GROUP BY run_id, key)"),
            metrics=f"(SELECT * FROM {db}.metrics WHERE {cut})",
            parameters=cut_params,
            dataset_inputs=f"(SELECT * FROM {db}.dataset_inputs WHERE {cut})",
        )

    def runs(self, limit: int = 50, experiment_id: str | None = None,
             as_of_ms: int | None = None) -> list[dict[str, Any]]:
        src = self.sources(as_of_ms)
        where = "WHERE experiment_id = {exp:String}" if experiment_id is not None else ""
        result = self.client.query(
            f"SELECT run_id, run_name, experiment_id, status, start_time, end_time, lifecycle_stage, "
            f"missing_artifacts FROM {src.runs} {where} ORDER BY start_time DESC, run_id LIMIT {{limit:UInt32}}",
            parameters={"limit": limit, "exp": experiment_id, **src.parameters},
        )
        return _rows_as_dicts(result)

    def run(self, run_id: str, as_of_ms: int | None = None) -> dict[str, Any]:
        src = self.sources(as_of_ms)
        params = {"r": run_id, **src.parameters}
        rows = _rows_as_dicts(self.client.query(
            f"SELECT * EXCEPT (src_partition, src_offset) FROM {src.runs} WHERE run_id = {{r:String}}",
            parameters=params))
        if not rows:
            when = "" if as_of_ms is None else " at that time"
            raise NotFound(f"run {run_id!r} not found{when} (it may not be materialized yet)")
        run = rows[0]
        for name, table in (("params", src.params), ("tags", src.tags)):
            run[name] = dict(self.client.query(
                f"SELECT key, value FROM {table} WHERE run_id = {{r:String}} ORDER BY key", parameters=params).result_rows)
        latest = self.client.query(
            f"SELECT key, latest FROM {src.latest_metrics} WHERE run_id = {{r:String}} ORDER BY key", parameters=params)
        run["metrics"] = {key: {"step": l[0], "timestamp": l[1], "value": l[2]} for key, l in latest.result_rows}
        run["dataset_inputs"] = self.dataset_inputs([run_id], src.dataset_inputs, src.parameters)[run_id]
        return run

    def dataset_inputs(self, run_ids: list[str], source: str | None = None,
                       parameters: dict[str, Any] | None = None) -> dict[str, list[dict[str, Any]]]:
        """MLflow's ``dataset_inputs`` of each run, in the order they were logged."""
        found: dict[str, list[dict[str, Any]]] = {r: [] for r in run_ids}
        rows = self.client.query(
            f"SELECT run_id, name, digest, source_type, source, schema, profile, tag_keys, tag_values "
            f"FROM {source or self.db + '.dataset_inputs'} WHERE run_id IN {{ids:Array(String)}} "
            f"ORDER BY run_id, src_offset", parameters={"ids": run_ids, **(parameters or {})}).result_rows
        for run_id, name, digest, source_type, source_text, schema, profile, keys, values in rows:
            dataset = {"name": name, "digest": digest, "source_type": source_type, "source": source_text}
            if schema:
                dataset["schema"] = schema
            if profile:
                dataset["profile"] = profile
            found[run_id].append({"tags": [{"key": k, "value": val} for k, val in zip(keys, values)],
                                  "dataset": dataset})
        return found

    def metric_history(self, run_id: str, key: str, limit: int | None = None,
                       as_of_ms: int | None = None) -> dict[str, Any]:
        sql, params = self._history_query(run_id, key, limit, as_of_ms)
        table = distinct_points(self.client.query_arrow(sql, parameters=params))
        return {name: table.column(name).to_numpy() for name in ("step", "timestamp_ms", "value")}

    def metric_history_arrow(self, run_id: str, key: str, as_of_ms: int | None = None) -> bytes:
        """The same history as an Arrow IPC stream, straight from the engine (no per-point Python);
        re-encoded only when it holds exact repeats to drop."""
        sql, params = self._history_query(run_id, key, None, as_of_ms)
        raw = self.client.raw_query(sql, parameters=params, fmt="ArrowStream")
        table = pa.ipc.open_stream(raw).read_all()
        distinct = distinct_points(table)
        if distinct is table:
            return raw
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema, options=pa.ipc.IpcWriteOptions(compression="lz4")) as writer:
            writer.write_table(distinct)
        return sink.getvalue().to_pybytes()

    def _history_query(self, run_id: str, key: str, limit: int | None,
                       as_of_ms: int | None) -> tuple[str, dict[str, Any]]:
        src = self.sources(as_of_ms)
        sql = (f"SELECT step, timestamp_ms, value FROM {src.metrics} "
               f"WHERE run_id = {{r:String}} AND key = {{k:String}} ORDER BY step, timestamp_ms, value")
        if limit is not None:
            sql += " LIMIT {limit:UInt64}"
        return sql, {"r": run_id, "k": key, "limit": limit, **src.parameters}

    def metric_history_page(self, run_id: str, key: str, after: HistoryPosition | None, limit: int,
                            as_of_ms: int | None = None) -> tuple[dict[str, np.ndarray], HistoryPosition | None]:
        """Up to ``limit`` points in (step, timestamp, value) order, starting after ``after``; returns
        the columns and the position to continue from (None on the last page). With ``as_of_ms`` only
        points of events logged by then.

        Keyset paging: a page reads from its (step, timestamp) onward in primary-key order and stops
        after the rows it needs (``LIMIT ... WITH TIES`` keeps every point of the last
        (step, timestamp), so ties are ordered by value here, the same way on every page). Each page
        costs the same however deep it is, and points logged meanwhile never shift a page.
        """
        src = self.sources(as_of_ms)
        where = "run_id = {r:String} AND key = {k:String}"
        skip = 0
        params: dict[str, Any] = {"r": run_id, "k": key, **src.parameters}
        if after is not None:
            where += " AND step >= {s:Int64} AND (step > {s:Int64} OR timestamp_ms >= {t:Int64})"
            params.update(s=after.step, t=after.timestamp_ms)
            skip = after.seen_at_position
        wanted = params["n"] = skip + limit + 1
        while True:
            table = self.client.query_arrow(
                f"SELECT step, timestamp_ms, value FROM {src.metrics} WHERE {where} "
                f"ORDER BY step, timestamp_ms LIMIT {{n:UInt64}} WITH TIES", parameters=params)
            exhausted = table.num_rows < params["n"]
            table = distinct_points(in_value_order_within_ties(table))
            if table.num_rows >= wanted or exhausted:
                break  # enough distinct points, or the whole rest of the history (an exact repeat is one point)
            params["n"] *= 2
        steps, stamps, values = (table.column(name).to_numpy() for name in ("step", "timestamp_ms", "value"))
        order = np.arange(skip, len(steps))
        more = len(order) > limit
        order = order[:limit]
        page = {"step": steps[order], "timestamp_ms": stamps[order], "value": values[order]}
        if not more:
            return page, None
        last_step, last_ts = int(page["step"][-1]), int(page["timestamp_ms"][-1])
        same = int(np.count_nonzero((page["step"] == last_step) & (page["timestamp_ms"] == last_ts)))
        if after is not None and (last_step, last_ts) == (after.step, after.timestamp_ms):
            same += after.seen_at_position
        return page, HistoryPosition(last_step, last_ts, same)

    def metric_downsampled(self, run_id: str, key: str, buckets: int,
                           step_range: tuple[int | None, int | None] = (None, None),
                           as_of_ms: int | None = None) -> dict[str, Any]:
        """At most ``buckets`` equal step ranges, each with min / max / last value and its point count,
        so spikes survive.

        The step range comes from ``metric_rollups`` (per 64-step block summaries). When a bucket
        spans at least four blocks the buckets are built from those summaries — whole blocks, so
        bucket widths are multiples of 64 steps and a 10M-point run reads 156k rows, not 10M; finer
        buckets are computed from the points themselves. ``step_range`` (inclusive, either end open)
        narrows the buckets to the steps a zoomed chart shows; rollup buckets then cover whole blocks.
        With ``as_of_ms`` only points of events up to that moment count; the rollups cannot be cut,
        so such a read always buckets the points themselves.
        """
        if as_of_ms is not None:
            return self._points_downsampled(run_id, key, buckets, step_range, *log_cut(self.client, self.db, as_of_ms))
        params = {"r": run_id, "k": key}
        (lo, hi, points), = self.client.query(
            f"SELECT min(min_step), max(max_step), sum(points) FROM {self.db}.metric_rollups "
            f"WHERE run_id = {{r:String}} AND key = {{k:String}}", parameters=params).result_rows
        if not points:
            return {name: np.empty(0) for name in DOWNSAMPLED_COLUMNS}
        lo = lo if step_range[0] is None else max(lo, step_range[0])
        hi = hi if step_range[1] is None else min(hi, step_range[1])
        if hi < lo:
            return {name: np.empty(0) for name in DOWNSAMPLED_COLUMNS}
        width = -(-(hi - lo + 1) // buckets)
        if width >= 4 * ROLLUP_STEPS:
            lo_block, hi_block = lo >> ROLLUP_SHIFT, hi >> ROLLUP_SHIFT
            sql = (f"SELECT intDiv(block - {{lo:Int64}}, {{per:Int64}}) AS bucket, min(min_step) AS step_min, "
                   f"max(max_step) AS step_max, min(min_value) AS min, max(max_value) AS max, "
                   f"argMaxMerge(last) AS last, sum(points) AS points FROM {self.db}.metric_rollups "
                   f"WHERE run_id = {{r:String}} AND key = {{k:String}} AND block BETWEEN {{lo:Int64}} AND {{hi:Int64}} "
                   f"GROUP BY bucket ORDER BY bucket")
            params.update(lo=lo_block, hi=hi_block, per=-(-(hi_block - lo_block + 1) // buckets))
        else:
            return self._bucket_points(params, lo, hi, width, "1")
        table = self.client.query_arrow(sql, parameters=params)
        return {name: table.column(name).to_numpy() for name in DOWNSAMPLED_COLUMNS}

    def _points_downsampled(self, run_id: str, key: str, buckets: int, step_range: tuple[int | None, int | None],
                            cut: str, cut_params: dict[str, Any]) -> dict[str, Any]:
        params = {"r": run_id, "k": key, **cut_params}
        (lo, hi, points), = self.client.query(
            f"SELECT min(step), max(step), count() FROM {self.db}.metrics "
            f"WHERE run_id = {{r:String}} AND key = {{k:String}} AND {cut}", parameters=params).result_rows
        lo = lo if step_range[0] is None else max(lo, step_range[0])
        hi = hi if step_range[1] is None else min(hi, step_range[1])
        if not points or hi < lo:
            return {name: np.empty(0) for name in DOWNSAMPLED_COLUMNS}
        return self._bucket_points(params, lo, hi, -(-(hi - lo + 1) // buckets), cut)

    def _bucket_points(self, params: dict[str, Any], lo: int, hi: int, width: int, cut: str) -> dict[str, Any]:
        """Buckets of ``width`` steps from ``lo`` to ``hi``, computed from the points that pass ``cut``."""
        sql = (f"SELECT intDiv(step - {{lo:Int64}}, {{per:Int64}}) AS bucket, min(step) AS step_min, "
               f"max(step) AS step_max, min(value) AS min, max(value) AS max, "
               f"argMax(value, bitShiftLeft(toInt128(step), 64) + timestamp_ms) AS last, count() AS points "
               f"FROM {self.db}.metrics WHERE run_id = {{r:String}} AND key = {{k:String}} "
               f"AND step BETWEEN {{lo:Int64}} AND {{hi:Int64}} AND {cut} GROUP BY bucket ORDER BY bucket")
        table = self.client.query_arrow(sql, parameters={**params, "lo": lo, "hi": hi, "per": max(1, width)})
        return {name: table.column(name).to_numpy() for name in DOWNSAMPLED_COLUMNS}

    def run_lifecycle(self, run_id: str, as_of_ms: int | None = None) -> list[dict[str, Any]]:
        """The run's lifecycle events from the event log, in log order (see :func:`lifecycle_entry`);
        with ``as_of_ms`` only those logged up to that moment."""
        until = "" if as_of_ms is None else "AND kafka_timestamp_ms <= {t:Int64} "
        rows = self.client.query(
            f"SELECT event_type, timestamp_ms, kafka_timestamp_ms, payload FROM {self.db}.events "
            f"WHERE aggregate_id = {{r:String}} AND event_type IN {{types:Array(String)}} {until}"
            f"ORDER BY kafka_timestamp_ms, src_partition, src_offset LIMIT 1000",
            parameters={"r": run_id, "types": list(LIFECYCLE_EVENTS), "t": as_of_ms}).result_rows
        return [lifecycle_entry(*row) for row in rows]

    def experiment_activity(self, experiment_ids: list[str]) -> list[dict[str, Any]]:
        """Per experiment: its (not deleted) runs, how many are RUNNING, and the last start or end time."""
        return _rows_as_dicts(self.client.query(
            f"SELECT experiment_id, count() AS runs, countIf(status = 'RUNNING') AS running, "
            f"max(greatest(start_time, ifNull(end_time, 0))) AS last_activity FROM {self.db}.runs_latest "
            f"WHERE experiment_id IN {{ids:Array(String)}} AND lifecycle_stage = 'active' GROUP BY experiment_id "
            f"ORDER BY experiment_id", parameters={"ids": experiment_ids}))

    def experiment_keys(self, experiment_id: str, limit: int) -> dict[str, Any]:
        """The distinct param, metric and tag keys over an experiment's active runs (one query per kind),
        each sorted and cut at ``limit``; ``truncated`` names the kinds that had more."""
        runs = (f"(SELECT run_id FROM {self.db}.runs_latest WHERE experiment_id = {{e:String}} "
                f"AND lifecycle_stage = 'active')")
        tables = {"params": f"{self.db}.params", "metrics": f"{self.db}.latest_metrics", "tags": f"{self.db}.tags_latest"}
        keys: dict[str, Any] = {"truncated": []}
        for kind, table in tables.items():
            found = [row[0] for row in self.client.query(
                f"SELECT DISTINCT key FROM {table} WHERE run_id IN {runs} ORDER BY key LIMIT {{n:UInt32}}",
                parameters={"e": experiment_id, "n": limit + 1}).result_rows]
            keys[kind] = found[:limit]
            if len(found) > limit:
                keys["truncated"].append(kind)
        return keys

    def compare(self, run_ids: list[str], key: str, after_step: int | None = None,
                limit: int | None = None) -> dict[str, Any]:
        """One metric of several runs aligned by step (the latest value per step; None where a run has
        none). A page: at most ``limit`` steps after ``after_step``, in step order; ``more`` says
        whether steps remain beyond the page."""
        where = "run_id IN {ids:Array(String)} AND key = {k:String}"
        params: dict[str, Any] = {"ids": run_ids, "k": key, "after": after_step, "n": limit}
        if after_step is not None:
            where += " AND step > {after:Int64}"
        more = False
        if limit is not None:
            bound = self.client.query(
                f"SELECT DISTINCT step FROM {self.db}.metrics WHERE {where} ORDER BY step "
                f"LIMIT 1 OFFSET {{n:UInt64}}", parameters=params).result_rows
            if bound:
                more = True
                params["below"] = bound[0][0]
                where += " AND step < {below:Int64}"
        table = self.client.query_arrow(
            f"SELECT run_id, step, argMax(value, timestamp_ms) AS value FROM {self.db}.metrics "
            f"WHERE {where} GROUP BY run_id, step ORDER BY step", parameters=params)
        runs = np.asarray(table.column("run_id").to_pylist(), dtype=object)
        steps, values = table.column("step").to_numpy(), table.column("value").to_numpy()
        unique_steps, position = np.unique(steps, return_inverse=True)
        aligned = {}
        for run_id in run_ids:
            column = np.full(len(unique_steps), np.nan)
            mine = runs == run_id
            column[position[mine]] = values[mine]
            present = np.zeros(len(unique_steps), bool)
            present[position[mine]] = True
            aligned[run_id] = [v if p else None for v, p in zip(column.tolist(), present.tolist())]
        return {"key": key, "steps": unique_steps.tolist(), "runs": aligned, "more": more}

    def rejects(self, limit: int = 50) -> list[dict[str, Any]]:
        result = self.client.query(
            f"SELECT received_at, reason, detail, event_type, event_id, aggregate_id, src_partition, src_offset "
            f"FROM {self.db}.rejects ORDER BY received_at DESC LIMIT {{limit:UInt32}}", parameters={"limit": limit})
        return _rows_as_dicts(result)

    def sql(self, query: str) -> dict[str, Any]:
        """Run user SQL with ClickHouse's readonly=1: the engine refuses writes, no parsing on our side."""
        try:
            result = self.client.query(query, settings=READ_ONLY_SETTINGS)
        except Exception as exc:
            raise InvalidInput(f"query failed: {exc}") from exc
        return {"columns": list(result.column_names), "rows": [list(r) for r in result.result_rows]}


MLFLOW_STATUS = {"FINALIZING": "RUNNING"}  # MLflow clients know no FINALIZING; it is still running


def mlflow_experiment(row: dict[str, Any]) -> dict[str, Any]:
    experiment = {k: row[k] for k in ("experiment_id", "name", "artifact_location", "lifecycle_stage",
                                      "last_update_time", "creation_time")}
    experiment["tags"] = [{"key": k, "value": v} for k, v in sorted(row["tags"].items())]
    return experiment


def mlflow_run_entity(info: dict[str, Any], data: dict[str, list]) -> dict[str, Any]:
    """MLflow's Run JSON from a runs_latest row (run_id, run_name, experiment_id, user_id, status,
    start_time, end_time, lifecycle_stage) and its metrics / params / tags lists (plus
    ``dataset_inputs``, which MLflow shows under ``inputs``)."""
    info = dict(info, run_uuid=info["run_id"], status=MLFLOW_STATUS.get(info["status"], info["status"]),
                artifact_uri=f"mlflow-artifacts:/{info['experiment_id']}/{info['run_id']}/artifacts")
    if info.get("end_time") is None:
        info.pop("end_time", None)
    data = dict(data)
    datasets = data.pop("dataset_inputs", None)
    return {"info": info, "data": data, "inputs": {"dataset_inputs": datasets} if datasets else {}}


def run_entity(entry: dict[str, Any]) -> dict[str, Any]:
    """MLflow's Run JSON from a run cache entry that holds the run's info and model links."""
    run = mlflow_run_entity(entry["info"], without_info(entry))
    links = entry["model_links"]
    if links["model_inputs"]:
        run["inputs"] = dict(run["inputs"], model_inputs=links["model_inputs"])
    if links["model_outputs"]:
        run["outputs"] = {"model_outputs": links["model_outputs"]}
    return run


def without_info(entry: dict[str, Any]) -> dict[str, Any]:
    """The metrics / params / tags / dataset inputs of a run cache entry."""
    return {k: v for k, v in entry.items() if k not in ("info", "model_links")} if "info" in entry else entry


def distinct_points(history: pa.Table) -> pa.Table:
    """A history sorted by (step, timestamp, value) without exact repeats, which sorting makes
    neighbours: MLflow's store keeps one point per (key, step, timestamp, value). Vectorized; values
    compare by their bits, so a repeated NaN is one point too."""
    if history.num_rows < 2:
        return history
    steps, stamps = history.column("step").to_numpy(), history.column("timestamp_ms").to_numpy()
    bits = np.ascontiguousarray(history.column("value").to_numpy()).view(np.int64)
    keep = np.ones(history.num_rows, bool)
    keep[1:] = (steps[1:] != steps[:-1]) | (stamps[1:] != stamps[:-1]) | (bits[1:] != bits[:-1])
    return history if keep.all() else history.filter(pa.array(keep))


class MlflowReader(TrackingReader):
    """Reads shaped as MLflow's REST entities. ``run_cache`` keeps runs' metrics / params / tags
    between reads; whoever stores batches must invalidate it (the server wires the worker to it)."""

    def __init__(self, client: Client, database: str, run_cache: RunDataCache | None = None) -> None:
        super().__init__(client, database)
        self.run_cache = run_cache or RunDataCache(capacity=0)

    EXPERIMENT_COLUMNS = "experiment_id, name, artifact_location, lifecycle_stage, last_update_time, creation_time, tags"

    def experiment(self, experiment_id: str) -> dict[str, Any] | None:
        rows = _rows_as_dicts(self.client.query(
            f"SELECT {self.EXPERIMENT_COLUMNS} FROM {self.db}.experiments_latest WHERE experiment_id = {{e:String}}",
            parameters={"e": experiment_id}))
        return mlflow_experiment(rows[0]) if rows else None

    def experiment_by_name(self, name: str) -> dict[str, Any] | None:
        rows = _rows_as_dicts(self.client.query(
            f"SELECT {self.EXPERIMENT_COLUMNS} FROM {self.db}.experiments_latest WHERE name = {{n:String}} "
            f"ORDER BY lifecycle_stage = 'active' DESC LIMIT 1", parameters={"n": name}))
        return mlflow_experiment(rows[0]) if rows else None

    def search_experiments(self, sql: str, parameters: dict[str, Any]) -> list[dict[str, Any]]:
        """Experiments of a ``server.experiment_search.build_experiment_search_query`` query."""
        return [mlflow_experiment(r) for r in _rows_as_dicts(self.client.query(sql, parameters=parameters))]

    def run_ids_of_experiment(self, experiment_id: str, lifecycle_stage: str) -> list[str]:
        return [r[0] for r in self.client.query(
            f"SELECT run_id FROM {self.db}.runs_latest WHERE experiment_id = {{e:String}} "
            f"AND lifecycle_stage = {{s:String}}", parameters={"e": experiment_id, "s": lifecycle_stage}).result_rows]

    def run_state_for_writes(self, run_id: str) -> tuple[str, str, dict[str, str]] | None:
        rows = self.client.query(f"SELECT experiment_id, lifecycle_stage FROM {self.db}.runs_latest "
                                 f"WHERE run_id = {{r:String}}", parameters={"r": run_id}).result_rows
        if not rows:
            return None
        params = dict(self.client.query(f"SELECT key, value FROM {self.db}.params WHERE run_id = {{r:String}}",
                                        parameters={"r": run_id}).result_rows)
        return rows[0][0], rows[0][1], params

    def mlflow_runs(self, run_ids: list[str]) -> list[dict[str, Any]]:
        """Full MLflow Run objects, in the order of ``run_ids``.

        Runs cached with their info come from the cache. For the others, two queries whatever
        their number: the infos, then metrics, params and tags as one UNION ALL. Each picks the
        latest versions of just these runs straight from the tables (the ``*_latest`` views would
        sort every run before the filter applies).
        """
        if not run_ids:
            return []
        fetched_at = self.run_cache.generation()
        entries = {r: e for r, e in self.run_cache.get_many(run_ids).items() if "info" in e}
        missing = [r for r in dict.fromkeys(run_ids) if r not in entries]
        if missing:
            infos = _rows_as_dicts(self.client.query(
                f"SELECT {', '.join(RUN_INFO_COLUMNS)} FROM {self.db}.runs WHERE run_id IN {{ids:Array(String)}} "
                f"ORDER BY run_id, src_offset DESC LIMIT 1 BY run_id", parameters={"ids": missing}))
            found = [info["run_id"] for info in infos]
            fetched = self._run_data(found)
            links = self._model_links(found)
            for info in infos:
                fetched[info["run_id"]].update(info=info, model_links=links[info["run_id"]])
            self.run_cache.put_many(fetched, fetched_at)
            entries.update(fetched)
        return [run_entity(entries[r]) for r in run_ids if r in entries]

    def _model_links(self, run_ids: list[str]) -> dict[str, dict[str, list[dict[str, Any]]]]:
        """Runs' ``model_inputs`` ([{model_id}]) and ``model_outputs`` ([{model_id, step}])."""
        links: dict[str, dict[str, list[dict[str, Any]]]] = {r: {"model_inputs": [], "model_outputs": []}
                                                              for r in run_ids}
        for run_id, direction, model_id, step in self.client.query(
                f"SELECT run_id, direction, model_id, step FROM {self.db}.run_model_links "
                f"WHERE run_id IN {{ids:Array(String)}} ORDER BY run_id, src_offset, model_id "
                f"LIMIT 1 BY run_id, direction, model_id", parameters={"ids": run_ids}).result_rows:
            if direction == "INPUT":
                links[run_id]["model_inputs"].append({"model_id": model_id})
            else:
                links[run_id]["model_outputs"].append({"model_id": model_id, "step": step})
        return links

    def run_with_own_writes(self, run_id: str) -> dict[str, Any] | None:
        """The run from a cache that holds this gateway's own appends (so a read needs no
        read-your-writes wait), when it holds the run's info and data; no query. Else None."""
        if not self.run_cache.holds_own_writes:
            return None
        entry = self.run_cache.get(run_id)
        return run_entity(entry) if entry is not None and "info" in entry else None

    def search_mlflow_runs(self, sql: str, parameters: dict[str, Any], max_results: int,
                           page_token: str | None, as_of_ms: int | None = None
                           ) -> tuple[list[dict[str, Any]], str | None]:
        """Run a query of ``build_search_query``: one page of full Run objects and the next page token.
        With ``as_of_ms`` the query was built with ``cut=LOG_CUT``; the cut's parameters are added here."""
        if as_of_ms is not None:
            parameters = {**parameters, **log_cut(self.client, self.db, as_of_ms)[1]}
        rows, next_token = paginate(_rows_as_dicts(self.client.query(sql, parameters=parameters)), max_results,
                                    page_token)
        infos = [{c: row[c] for c in RUN_INFO_COLUMNS} for row in rows]
        if as_of_ms is None:
            return self._with_data(infos), next_token
        data = self._run_data_as_of([info["run_id"] for info in infos], self.sources(as_of_ms))
        return [mlflow_run_entity(info, data[info["run_id"]]) for info in infos], next_token

    def _run_data_as_of(self, run_ids: list[str], src: StateSources) -> dict[str, dict[str, list]]:
        """Params, latest metrics and tags of runs as of a cut of the log (not cached: the past is rarely re-read)."""
        data: dict[str, dict[str, list]] = {r: {"metrics": [], "params": [], "tags": []} for r in run_ids}
        rows = self.client.query(
            f"SELECT 'metrics', run_id, key, '', latest.1, latest.2, latest.3 FROM {src.latest_metrics} "
            f"WHERE run_id IN {{ids:Array(String)}} "
            f"UNION ALL SELECT 'params', run_id, key, value, 0, 0, 0 FROM {src.params} WHERE run_id IN {{ids:Array(String)}} "
            f"UNION ALL SELECT 'tags', run_id, key, value, 0, 0, 0 FROM {src.tags} WHERE run_id IN {{ids:Array(String)}}",
            parameters={"ids": run_ids, **src.parameters}).result_rows
        for kind, run_id, key, text, step, ts, value in sorted(rows, key=lambda r: (r[0], r[1], r[2])):
            if kind == "metrics":
                data[run_id]["metrics"].append({"key": key, "value": value, "timestamp": ts, "step": step})
            else:
                data[run_id][kind].append({"key": key, "value": text})
        return data

    def _with_data(self, infos: list[dict[str, Any]]) -> list[dict[str, Any]]:
        run_ids = [info["run_id"] for info in infos]
        fetched_at = self.run_cache.generation()
        data = self.run_cache.get_many(run_ids)
        missing = [r for r in run_ids if r not in data]
        if missing:
            fetched = self._run_data(missing)
            self.run_cache.put_many(fetched, fetched_at)
            data.update(fetched)
        return [mlflow_run_entity(info, without_info(data[info["run_id"]])) for info in infos]

    def _run_data(self, run_ids: list[str]) -> dict[str, dict[str, list]]:
        db, ids = self.db, {"ids": run_ids}
        data: dict[str, dict[str, list]] = {r: {"metrics": [], "params": [], "tags": []} for r in run_ids}
        entries = self.client.query(
            f"SELECT * FROM ("
            f"SELECT 'metrics' AS kind, run_id, key, '' AS text, latest.1 AS step, latest.2 AS ts, latest.3 AS value "
            f"FROM (SELECT run_id, key, max(latest) AS latest FROM {db}.latest_metrics "
            f"WHERE run_id IN {{ids:Array(String)}} GROUP BY run_id, key) "
            f"UNION ALL SELECT 'params', run_id, key, value, 0, 0, 0 FROM {db}.params WHERE run_id IN {{ids:Array(String)}} "
            f"UNION ALL SELECT 'tags', run_id, key, value, 0, 0, 0 FROM (SELECT run_id, key, value, deleted FROM {db}.tags "
            f"WHERE run_id IN {{ids:Array(String)}} ORDER BY run_id, key, src_offset DESC LIMIT 1 BY run_id, key) "
            f"WHERE deleted = 0) ORDER BY kind, run_id, key", parameters=ids)
        for kind, run_id, key, text, step, ts, value in entries.result_rows:
            if run_id not in data:
                continue
            if kind == "metrics":
                data[run_id]["metrics"].append({"key": key, "value": value, "timestamp": ts, "step": step})
            else:
                data[run_id][kind].append({"key": key, "value": text})
        for run_id, inputs in self.dataset_inputs(run_ids).items():
            data[run_id]["dataset_inputs"] = inputs
        return data

    def mlflow_run(self, run_id: str) -> dict[str, Any] | None:
        runs = self.mlflow_runs([run_id])
        return runs[0] if runs else None

