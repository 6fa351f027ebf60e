from trackstream.consumers.ingest_stats import IngestStats


def test_lag_is_highwater_minus_next_offset_per_partition():
    stats = IngestStats()
    stats.record_batch(10, 100, 1, 0, 0.01, {0: 9, 1: 4})
    stats.highwaters.update({0: 10, 1: 20, 2: 3})
    assert stats.lag() == {0: 0, 1: 15, 2: 3}


def test_prometheus_exposition_has_counters_lag_and_rates():
    stats = IngestStats()
    stats.record_batch(5, 50, 2, 1, 0.5, {0: 4})
    stats.highwaters[0] = 7
    text = stats.prometheus()
    assert "# TYPE trackstream_events_total counter\ntrackstream_events_total 5" in text
    assert "trackstream_rejects_total 2" in text
    assert 'trackstream_consumer_lag{partition="0"} 2' in text
    assert "trackstream_insert_seconds_sum 0.500000" in text and "trackstream_insert_seconds_count 1" in text
    assert "trackstream_events_per_s " in text


def test_status_dict_reports_rates_and_positions():
    stats = IngestStats()
    stats.record_batch(3, 30, 0, 0, 0.1, {2: 8})
    status = stats.as_dict()
    assert status["events"] == 3 and status["positions"] == {"2": 8}
    assert status["events_per_s"] >= 0


def test_a_gateway_shows_the_workers_lag_and_no_counters_of_its_own():
    stats = IngestStats(role="gateway")
    stats.positions = {0: 9, 1: 4}
    stats.highwaters = {0: 10, 1: 8}
    status = stats.as_dict()
    assert status["role"] == "gateway"
    assert status["lag"] == {"0": 0, "1": 3}
    assert "events" not in status and "points_per_s" not in status  # they would read as zero
    text = stats.prometheus()
    assert 'trackstream_consumer_lag{partition="1"} 3' in text
    assert "trackstream_events_total" not in text and "trackstream_insert_seconds" not in text
