-- The Kafka timestamp of every event: the time axis of point-in-time reads (`as_of`) and of
-- `trackstream replay --until`.
ALTER TABLE {db}.events ADD COLUMN IF NOT EXISTS kafka_timestamp_ms Int64 DEFAULT 0 CODEC(DoubleDelta, ZSTD(1)) AFTER timestamp_ms;
