-- trackstream ClickHouse schema, version 1. `{db}` is replaced with the target database.
-- State tables (experiments, runs, params, tags, artifacts) keep every version as its own row;
-- the *_latest views give the current state. Keeping history is what makes point-in-time reads
-- and crash-consistent worker state possible.
-- Every materialized row carries the Kafka position of the event that produced it
-- (src_partition, src_offset): it is the idempotency key for exactly-once writes and what
-- point-in-time state reads filter on. See docs/clickhouse-schema.md.

CREATE TABLE IF NOT EXISTS {db}.events
(
    src_partition  UInt32,
    src_offset     UInt64 CODEC(Delta, ZSTD(1)),
    event_type     LowCardinality(String),
    schema_version UInt16,
    event_id       String,
    aggregate_id   String,
    writer_id      String,
    seq            UInt64,
    timestamp_ms   Int64 CODEC(DoubleDelta, ZSTD(1)),
    payload        String CODEC(ZSTD(3)),
    ingested_at    DateTime64(3) DEFAULT now64(3)
)
ENGINE = MergeTree
ORDER BY (src_partition, src_offset);

CREATE TABLE IF NOT EXISTS {db}.experiments
(
    experiment_id     String,
    name              String,
    artifact_location String,
    lifecycle_stage   LowCardinality(String),
    creation_time     Int64,
    last_update_time  Int64,
    tags              Map(String, String),
    src_partition     UInt32,
    src_offset        UInt64
)
ENGINE = MergeTree
ORDER BY (experiment_id, src_offset);

CREATE TABLE IF NOT EXISTS {db}.runs
(
    run_id            String,
    experiment_id     String,
    run_name          String,
    user_id           String,
    source_name       String,
    parent_run_id     String,
    status            LowCardinality(String),
    start_time        Int64,
    end_time          Nullable(Int64),
    lifecycle_stage   LowCardinality(String),
    artifact_uri      String,
    missing_artifacts Array(String),
    src_partition     UInt32,
    src_offset        UInt64
)
ENGINE = MergeTree
ORDER BY (run_id, src_offset);

CREATE TABLE IF NOT EXISTS {db}.params
(
    run_id        String,
    key           String,
    value         String,
    timestamp_ms  Int64,
    event_id      String,
    src_partition UInt32,
    src_offset    UInt64
)
ENGINE = MergeTree
ORDER BY (run_id, key, src_offset);

CREATE TABLE IF NOT EXISTS {db}.metrics
(
    run_id        LowCardinality(String),
    key           LowCardinality(String),
    step          Int64 CODEC(Delta, ZSTD(1)),
    timestamp_ms  Int64 CODEC(DoubleDelta, ZSTD(1)),
    value         Float64 CODEC(Gorilla, ZSTD(1)),
    src_partition UInt32 CODEC(ZSTD(1)),
    src_offset    UInt64 CODEC(Delta, ZSTD(1))
)
ENGINE = MergeTree
ORDER BY (run_id, key, step, timestamp_ms);

-- MLflow's latest-value rule: the greatest (step, timestamp, value) tuple per (run, key).
CREATE TABLE IF NOT EXISTS {db}.latest_metrics
(
    run_id LowCardinality(String),
    key    LowCardinality(String),
    latest SimpleAggregateFunction(max, Tuple(Int64, Int64, Float64))
)
ENGINE = AggregatingMergeTree
ORDER BY (run_id, key);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.latest_metrics_mv TO {db}.latest_metrics AS
SELECT run_id, key, max((step, timestamp_ms, value)) AS latest
FROM {db}.metrics
GROUP BY run_id, key;

CREATE TABLE IF NOT EXISTS {db}.tags
(
    run_id        String,
    key           String,
    value         String,
    deleted       UInt8,
    src_partition UInt32,
    src_offset    UInt64
)
ENGINE = MergeTree
ORDER BY (run_id, key, src_offset);

CREATE TABLE IF NOT EXISTS {db}.artifacts
(
    run_id        String,
    path          String,
    size          Int64,
    sha256        String,
    uri           String,
    committed_at  Int64,
    src_partition UInt32,
    src_offset    UInt64
)
ENGINE = MergeTree
ORDER BY (run_id, path, src_offset);

CREATE TABLE IF NOT EXISTS {db}.rejects
(
    src_partition UInt32,
    src_offset    UInt64,
    reason        LowCardinality(String),
    detail        String,
    event_type    String,
    event_id      String,
    aggregate_id  String,
    raw_base64    String CODEC(ZSTD(3)),
    received_at   DateTime64(3) DEFAULT now64(3)
)
ENGINE = MergeTree
ORDER BY (src_partition, src_offset);

CREATE VIEW IF NOT EXISTS {db}.experiments_latest AS
SELECT * FROM {db}.experiments ORDER BY experiment_id, src_offset DESC LIMIT 1 BY experiment_id;

CREATE VIEW IF NOT EXISTS {db}.runs_latest AS
SELECT * FROM {db}.runs ORDER BY run_id, src_offset DESC LIMIT 1 BY run_id;

CREATE VIEW IF NOT EXISTS {db}.tags_latest AS
SELECT run_id, key, value FROM
    (SELECT * FROM {db}.tags ORDER BY run_id, key, src_offset DESC LIMIT 1 BY run_id, key)
WHERE deleted = 0;

CREATE VIEW IF NOT EXISTS {db}.artifacts_latest AS
SELECT * FROM {db}.artifacts ORDER BY run_id, path, src_offset DESC LIMIT 1 BY run_id, path;
