-- Dataset inputs of runs (MLflow's log_input / runs/log-inputs), from inputs_logged events.
-- One row per (run, name, digest): the materializer keeps a run's first input of a dataset, as
-- MLflow's store does, so this table holds exactly what runs/get shows. Input tags keep their
-- order as two parallel arrays; the context is the value of the `mlflow.data.context` tag.
-- schema and profile are '' when absent. See docs/clickhouse-schema.md.
CREATE TABLE IF NOT EXISTS {db}.dataset_inputs
(
    run_id        String,
    name          String,
    digest        String,
    source_type   LowCardinality(String),
    source        String CODEC(ZSTD(3)),
    schema        String CODEC(ZSTD(3)),
    profile       String CODEC(ZSTD(3)),
    tag_keys      Array(String),
    tag_values    Array(String),
    logged_at     Int64,
    src_partition UInt32,
    src_offset    UInt64
)
ENGINE = MergeTree
ORDER BY (run_id, src_offset, name, digest);
