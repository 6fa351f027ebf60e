-- Write-state changes in the materialized positions: besides the runs a batch changed, each change
-- to what gateways check writes against (a run's lifecycle and params, an experiment's lifecycle)
-- with the event that made it, as (kind, id, src_partition, src_offset). A gateway that did not
-- append that event itself forgets what it cached, so a run deleted through one gateway is refused
-- writes through another (server/write_state.py).
ALTER TABLE {db}.materialized_positions ADD COLUMN IF NOT EXISTS write_state Array(Tuple(String, String, UInt32, Int64)) DEFAULT []
