-- MLflow 3 LoggedModels (issue 13): models, their params, tags, metrics and committed files, and the
-- models a run took as input or produced. Versioned rows like the run tables (every row carries
-- its event's src_partition / src_offset); the *_latest views give the current state.
-- Version 005: 004 belongs to dataset inputs (another branch); SchemaManager allows the gap.

CREATE TABLE IF NOT EXISTS {db}.logged_models
(
    model_id                  String,
    experiment_id             String,
    name                      String,
    model_type                String,
    source_run_id             String,
    artifact_location         String,
    status                    LowCardinality(String),
    status_message            String,
    lifecycle_stage           LowCardinality(String),
    creation_timestamp_ms     Int64,
    last_updated_timestamp_ms Int64,
    src_partition             UInt32,
    src_offset                UInt64
)
ENGINE = MergeTree
ORDER BY (model_id, src_offset);

CREATE TABLE IF NOT EXISTS {db}.logged_model_params
(
    model_id      String,
    key           String,
    value         String,
    src_partition UInt32,
    src_offset    UInt64
)
ENGINE = MergeTree
ORDER BY (model_id, key, src_offset);

CREATE TABLE IF NOT EXISTS {db}.logged_model_tags
(
    model_id      String,
    key           String,
    value         String,
    deleted       UInt8,
    src_partition UInt32,
    src_offset    UInt64
)
ENGINE = MergeTree
ORDER BY (model_id, key, src_offset);

CREATE TABLE IF NOT EXISTS {db}.logged_model_metrics
(
    model_id       String,
    run_id         String,
    key            String,
    value          Float64,
    step           Int64,
    timestamp_ms   Int64,
    dataset_name   String,
    dataset_digest String,
    src_partition  UInt32,
    src_offset     UInt64
)
ENGINE = MergeTree
ORDER BY (model_id, key, step, timestamp_ms);

CREATE TABLE IF NOT EXISTS {db}.logged_model_artifacts
(
    model_id      String,
    path          String,
    size          Int64,
    sha256        String,
    uri           String,
    committed_at  Int64,
    src_partition UInt32,
    src_offset    UInt64
)
ENGINE = MergeTree
ORDER BY (model_id, path, src_offset);

CREATE TABLE IF NOT EXISTS {db}.run_model_links
(
    run_id        String,
    direction     LowCardinality(String),
    model_id      String,
    step          Int64,
    src_partition UInt32,
    src_offset    UInt64
)
ENGINE = MergeTree
ORDER BY (run_id, direction, model_id, src_offset);

CREATE VIEW IF NOT EXISTS {db}.logged_models_latest AS
SELECT * FROM {db}.logged_models ORDER BY model_id, src_offset DESC LIMIT 1 BY model_id;

CREATE VIEW IF NOT EXISTS {db}.logged_model_tags_latest AS
SELECT model_id, key, value FROM
    (SELECT * FROM {db}.logged_model_tags ORDER BY model_id, key, src_offset DESC LIMIT 1 BY model_id, key)
WHERE deleted = 0;
