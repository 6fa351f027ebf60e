-- Exact duplicate points (same run, key, step, timestamp and value) are one point, as in MLflow's
-- store. `metrics` keeps every logged row (the worker does not look up earlier batches on the hot
-- path); reads deduplicate: the history routes select DISTINCT points, and this view is the same for
-- SQL users — one row per distinct point, with the log position of its first logging (so as-of cuts
-- on src_offset keep it from the moment it was first logged). Latest values, search and compare
-- take a max / argMax per key or step, which a repeated point does not change.

CREATE VIEW IF NOT EXISTS {db}.metric_points AS
SELECT run_id, key, step, timestamp_ms, value, min(src_partition) AS src_partition, min(src_offset) AS src_offset
FROM {db}.metrics
GROUP BY run_id, key, step, timestamp_ms, value;
