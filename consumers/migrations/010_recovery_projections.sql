-- Recovery in proportion to the batch, not the log (issue 11, hole 6). A worker that restarts
-- or gets partitions reloads the highest stored offset per partition of every table, and reads
-- the state of the batch's runs as of the batch. Two projections make both cheap:
-- * high_water_marks on every table a worker writes: max(src_offset) per src_partition,
--   kept per part, so reloading the marks reads a few rows per part instead of the table;
-- * by_aggregate on events: the writers' last sequence numbers of the batch's runs are read by
--   aggregate_id, which the table (ordered by src_partition, src_offset) cannot seek.
-- A projection is written with each part by the same insert, so it is as exactly-once as the rows.
-- MATERIALIZE builds them for parts written before this migration (a background mutation);
-- running this file again changes nothing.
-- non_replicated_deduplication_window: each insert carries a deduplication token (consumers/store.py,
-- insert_settings), and the server remembers the last 1,000 per table, so an insert sent again after
-- a dropped connection (stored, but its response lost) is not stored twice.
ALTER TABLE {db}.experiments ADD PROJECTION IF NOT EXISTS high_water_marks (SELECT src_partition, max(src_offset) GROUP BY src_partition);
ALTER TABLE {db}.experiments MATERIALIZE PROJECTION high_water_marks;
ALTER TABLE {db}.runs ADD PROJECTION IF NOT EXISTS high_water_marks (SELECT src_partition, max(src_offset) GROUP BY src_partition);
ALTER TABLE {db}.runs MATERIALIZE PROJECTION high_water_marks;
ALTER TABLE {db}.params ADD PROJECTION IF NOT EXISTS high_water_marks (SELECT src_partition, max(src_offset) GROUP BY src_partition);
ALTER TABLE {db}.params MATERIALIZE PROJECTION high_water_marks;
ALTER TABLE {db}.tags ADD PROJECTION IF NOT EXISTS high_water_marks (SELECT src_partition, max(src_offset) GROUP BY src_partition);
ALTER TABLE {db}.tags MATERIALIZE PROJECTION high_water_marks;
ALTER TABLE {db}.artifacts ADD PROJECTION IF NOT EXISTS high_water_marks (SELECT src_partition, max(src_offset) GROUP BY src_partition);
ALTER TABLE {db}.artifacts MATERIALIZE PROJECTION high_water_marks;
ALTER TABLE {db}.dataset_inputs ADD PROJECTION IF NOT EXISTS high_water_marks (SELECT src_partition, max(src_offset) GROUP BY src_partition);
ALTER TABLE {db}.dataset_inputs MATERIALIZE PROJECTION high_water_marks;
ALTER TABLE {db}.rejects ADD PROJECTION IF NOT EXISTS high_water_marks (SELECT src_partition, max(src_offset) GROUP BY src_partition);
ALTER TABLE {db}.rejects MATERIALIZE PROJECTION high_water_marks;
ALTER TABLE {db}.metrics ADD PROJECTION IF NOT EXISTS high_water_marks (SELECT src_partition, max(src_offset) GROUP BY src_partition);
ALTER TABLE {db}.metrics MATERIALIZE PROJECTION high_water_marks;
ALTER TABLE {db}.events ADD PROJECTION IF NOT EXISTS high_water_marks (SELECT src_partition, max(src_offset) GROUP BY src_partition);
ALTER TABLE {db}.events MATERIALIZE PROJECTION high_water_marks;
ALTER TABLE {db}.logged_models ADD PROJECTION IF NOT EXISTS high_water_marks (SELECT src_partition, max(src_offset) GROUP BY src_partition);
ALTER TABLE {db}.logged_models MATERIALIZE PROJECTION high_water_marks;
ALTER TABLE {db}.logged_model_params ADD PROJECTION IF NOT EXISTS high_water_marks (SELECT src_partition, max(src_offset) GROUP BY src_partition);
ALTER TABLE {db}.logged_model_params MATERIALIZE PROJECTION high_water_marks;
ALTER TABLE {db}.logged_model_tags ADD PROJECTION IF NOT EXISTS high_water_marks (SELECT src_partition, max(src_offset) GROUP BY src_partition);
ALTER TABLE {db}.logged_model_tags MATERIALIZE PROJECTION high_water_marks;
ALTER TABLE {db}.logged_model_metrics ADD PROJECTION IF NOT EXISTS high_water_marks (SELECT src_partition, max(src_offset) GROUP BY src_partition);
ALTER TABLE {db}.logged_model_metrics MATERIALIZE PROJECTION high_water_marks;
ALTER TABLE {db}.logged_model_artifacts ADD PROJECTION IF NOT EXISTS high_water_marks (SELECT src_partition, max(src_offset) GROUP BY src_partition);
ALTER TABLE {db}.logged_model_artifacts MATERIALIZE PROJECTION high_water_marks;
ALTER TABLE {db}.run_model_links ADD PROJECTION IF NOT EXISTS high_water_marks (SELECT src_partition, max(src_offset) GROUP BY src_partition);
ALTER TABLE {db}.run_model_links MATERIALIZE PROJECTION high_water_marks;
ALTER TABLE {db}.events ADD PROJECTION IF NOT EXISTS by_aggregate (SELECT aggregate_id, writer_id, seq, src_partition, src_offset ORDER BY aggregate_id, src_offset);
ALTER TABLE {db}.events MATERIALIZE PROJECTION by_aggregate;
ALTER TABLE {db}.experiments MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE {db}.runs MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE {db}.params MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE {db}.tags MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE {db}.artifacts MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE {db}.dataset_inputs MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE {db}.rejects MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE {db}.metrics MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE {db}.events MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE {db}.logged_models MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE {db}.logged_model_params MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE {db}.logged_model_tags MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE {db}.logged_model_metrics MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE {db}.logged_model_artifacts MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE {db}.run_model_links MODIFY SETTING non_replicated_deduplication_window = 1000;
