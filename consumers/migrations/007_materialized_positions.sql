-- Materialized positions (issue 11): after a worker stored a batch, one row per partition with the
-- batch's last offset and the runs it changed. Gateways in other processes poll this table to
-- advance their read-your-writes marks and to invalidate their run caches (server/positions.py).
-- Rows are only needed until every gateway has seen them: a day is plenty.
-- Version 007: reserved for the scale-out branch; SchemaManager allows the gap.

CREATE TABLE IF NOT EXISTS {db}.materialized_positions
(
    src_partition UInt32,
    src_offset    Int64,
    touched_runs  Array(String),
    stored_at     DateTime DEFAULT now()
)
ENGINE = MergeTree
ORDER BY (src_partition, src_offset)
TTL stored_at + INTERVAL 1 DAY
