-- search_runs without scanning every run version and every key (issue 14).
-- runs, params, tags and latest_metrics are ordered by run first, which suits reading one run but
-- makes a search read every version of every run and every key of every run to find one key:
-- with 30 metric keys per run, a metric filter over 10,000 runs read 300,000+ latest_metrics rows
-- (and FINAL merged them across unmerged parts). Four tables keep the same rows laid out for search,
-- each filled by a materialized view, so the worker's inserts fill them in the same statement:
-- * runs_current: the newest version of each run (ReplacingMergeTree on src_offset), ordered by
--   experiment, so a search reads the runs of its experiments, once each after merges;
-- * latest_metrics_by_key, params_by_key, tags_by_key: ordered by key, so a filter or an order on one
--   key reads that key's rows only.
-- Each is read the way its source is (the newest version, the greatest (step, timestamp, value), any
-- stored value of an immutable param, the tag row with the greatest offset), so a row written twice
-- (a retried insert, this file run again) changes no answer. Each view is created before its backfill:
-- a row inserted in between lands twice, never not at all.

CREATE TABLE IF NOT EXISTS {db}.runs_current
(
    run_id          String,
    experiment_id   String,
    run_name        String,
    user_id         String,
    status          LowCardinality(String),
    start_time      Int64,
    end_time        Nullable(Int64),
    lifecycle_stage LowCardinality(String),
    artifact_uri    String,
    src_offset      UInt64
)
ENGINE = ReplacingMergeTree(src_offset)
ORDER BY (experiment_id, run_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.runs_current_mv TO {db}.runs_current AS
SELECT run_id, experiment_id, run_name, user_id, status, start_time, end_time, lifecycle_stage, artifact_uri,
       src_offset
FROM {db}.runs;

INSERT INTO {db}.runs_current
SELECT run_id, experiment_id, run_name, user_id, status, start_time, end_time, lifecycle_stage, artifact_uri,
       src_offset
FROM {db}.runs;

CREATE TABLE IF NOT EXISTS {db}.latest_metrics_by_key
(
    key    LowCardinality(String),
    run_id String,
    latest SimpleAggregateFunction(max, Tuple(Int64, Int64, Float64))
)
ENGINE = AggregatingMergeTree
ORDER BY (key, run_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.latest_metrics_by_key_mv TO {db}.latest_metrics_by_key AS
SELECT key, run_id, latest FROM {db}.latest_metrics;

INSERT INTO {db}.latest_metrics_by_key SELECT key, run_id, latest FROM {db}.latest_metrics;

CREATE TABLE IF NOT EXISTS {db}.params_by_key
(
    key    String,
    run_id String,
    value  String
)
ENGINE = ReplacingMergeTree
ORDER BY (key, run_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.params_by_key_mv TO {db}.params_by_key AS
SELECT key, run_id, value FROM {db}.params;

INSERT INTO {db}.params_by_key SELECT key, run_id, value FROM {db}.params;

CREATE TABLE IF NOT EXISTS {db}.tags_by_key
(
    key        String,
    run_id     String,
    value      String,
    deleted    UInt8,
    src_offset UInt64
)
ENGINE = MergeTree
ORDER BY (key, run_id, src_offset);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.tags_by_key_mv TO {db}.tags_by_key AS
SELECT key, run_id, value, deleted, src_offset FROM {db}.tags;

INSERT INTO {db}.tags_by_key SELECT key, run_id, value, deleted, src_offset FROM {db}.tags
