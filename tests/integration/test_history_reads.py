"""Metric-history reads on the real engine: keyset pages and the rollup-backed downsample."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from trackstream.server.reader import ROLLUP_STEPS, MlflowReader


def insert_points(client, database, steps, values, timestamps=None, run_id="r1", key="loss", chunks=3):
    steps = np.asarray(steps, np.int64)
    timestamps = np.asarray(timestamps if timestamps is not None else steps + 1000, np.int64)
    values = np.asarray(values, np.float64)
    order = np.random.default_rng(0).permutation(len(steps))  # arrival order is not step order
    for part in np.array_split(order, chunks):
        n = len(part)
        client.insert_arrow(f"{database}.metrics", pa.table({
            "run_id": [run_id] * n, "key": [key] * n, "step": steps[part], "timestamp_ms": timestamps[part],
            "value": values[part], "src_partition": np.zeros(n, np.uint32), "src_offset": part.astype(np.uint64)}))


def all_pages(reader, page_size, run_id="r1", key="loss"):
    steps, stamps, values, after, pages = [], [], [], None, 0
    while True:
        page, after = reader.metric_history_page(run_id, key, after, page_size)
        steps += page["step"].tolist()
        stamps += page["timestamp_ms"].tolist()
        values += page["value"].tolist()
        pages += 1
        if after is None:
            return steps, stamps, values, pages


def test_keyset_pages_return_every_point_once_in_order_even_across_ties(db):
    client, database = db
    # 30 distinct points share step 5 and timestamp 1005 (an exact repeat would be one point), plus NaN
    # and negative steps
    steps = np.concatenate([np.arange(-20, 100), np.full(30, 5)])
    values = np.concatenate([np.linspace(0, 1, 120), np.linspace(0.2037, 0.7963, 30)])
    values[7] = math.nan
    insert_points(client, database, steps, values)
    reader = MlflowReader(client, database)
    order = np.lexsort((values, steps + 1000, steps))  # step, timestamp, value
    for page_size in (1, 7, 16, 149, 150, 1000):
        steps_got, stamps_got, values_got, pages = all_pages(reader, page_size)
        assert steps_got == steps[order].tolist() and stamps_got == (steps[order] + 1000).tolist()
        assert np.array_equal(np.array(values_got), values[order], equal_nan=True)
        assert pages == math.ceil(150 / page_size)


def test_exact_repeats_are_one_point_on_every_route_and_page(db):
    """Each of 40 points logged four times (an exact repeat is one point, as in MLflow's store); pages
    smaller than the repeats still reach the end."""
    client, database = db
    steps = np.tile(np.arange(40), 4)
    values = np.tile(np.linspace(0, 1, 40), 4)
    insert_points(client, database, steps, values)
    reader = MlflowReader(client, database)
    for page_size in (1, 3, 25, 1000):
        steps_got, _, values_got, _ = all_pages(reader, page_size)
        assert steps_got == list(range(40)) and values_got == np.linspace(0, 1, 40).tolist()
    assert reader.metric_history("r1", "loss")["step"].tolist() == list(range(40))
    arrow = pa.ipc.open_stream(reader.metric_history_arrow("r1", "loss")).read_all()
    assert arrow.column("step").to_pylist() == list(range(40))
    view = client.query(f"SELECT step FROM {database}.metric_points WHERE run_id = 'r1' ORDER BY step")
    assert [r[0] for r in view.result_rows] == list(range(40))


def test_points_logged_between_pages_do_not_shift_later_pages(db):
    client, database = db
    insert_points(client, database, np.arange(100), np.zeros(100))
    reader = MlflowReader(client, database)
    first, after = reader.metric_history_page("r1", "loss", None, 50)
    insert_points(client, database, np.arange(-10, 0), np.ones(10), chunks=1)  # earlier steps arrive late
    second, after = reader.metric_history_page("r1", "loss", after, 50)
    assert first["step"].tolist() == list(range(50)) and second["step"].tolist() == list(range(50, 100))


@pytest.mark.parametrize("n, buckets", [(5_000, 100), (200_000, 500), (300_000, 1000)],
                         ids=["from-points", "from-rollups", "from-rollups-1000"])
def test_downsample_keeps_spikes_totals_and_last_values_per_bucket(db, n, buckets):
    client, database = db
    rng = np.random.default_rng(1)
    steps = np.arange(n) - 17
    values = rng.random(n)
    values[n // 3] = 50.0   # a spike
    values[n // 2] = -50.0  # a dip
    insert_points(client, database, steps, values)
    reader = MlflowReader(client, database)
    down = reader.metric_downsampled("r1", "loss", buckets)
    assert 0 < len(down["bucket"]) <= buckets
    assert int(down["points"].sum()) == n
    assert down["max"].max() == 50.0 and down["min"].min() == -50.0
    assert down["step_min"][0] == steps[0] and down["step_max"][-1] == steps[-1]
    assert np.all(down["step_min"][1:] > down["step_max"][:-1])  # buckets do not overlap
    widths = down["step_max"] - down["step_min"] + 1
    assert len(set(widths[1:-1].tolist())) == 1  # contiguous steps: every inner bucket is equally wide
    # every bucket's last is the value at its greatest step
    by_step = dict(zip(steps.tolist(), values.tolist()))
    assert [by_step[s] for s in down["step_max"].tolist()] == down["last"].tolist()
    if n // buckets >= 4 * ROLLUP_STEPS:
        assert all(w % ROLLUP_STEPS == 0 for w in widths[1:-1].tolist())


def test_downsample_last_prefers_the_later_timestamp_at_the_same_step(db):
    client, database = db
    insert_points(client, database, [10, 10, 10], [1.0, 3.0, 2.0], timestamps=[5, 9, 7], chunks=1)
    down = MlflowReader(client, database).metric_downsampled("r1", "loss", 10)
    assert down["last"].tolist() == [3.0] and down["points"].tolist() == [3]


def test_downsample_of_an_unknown_metric_is_empty(db):
    client, database = db
    down = MlflowReader(client, database).metric_downsampled("nope", "loss", 10)
    assert all(len(col) == 0 for col in down.values())


@pytest.mark.parametrize("n, lo, hi, buckets", [(5_000, 1_000, 1_999, 100), (400_000, 100_000, 299_999, 100)],
                         ids=["from-points", "from-rollups"])
def test_downsample_of_a_step_range_covers_only_that_range_more_finely(db, n, lo, hi, buckets):
    """What the UI's zoom asks for: buckets over the visible steps only (rollups: whole 64-step blocks)."""
    client, database = db
    values = np.random.default_rng(2).random(n)
    values[(lo + hi) // 2] = 99.0  # a spike inside the range
    values[hi + 500] = 123.0  # one outside it
    insert_points(client, database, np.arange(n), values)
    reader = MlflowReader(client, database)
    whole = reader.metric_downsampled("r1", "loss", buckets)
    zoomed = reader.metric_downsampled("r1", "loss", buckets, (lo, hi))
    assert 0 < len(zoomed["bucket"]) <= buckets
    assert zoomed["step_min"][0] >= lo - ROLLUP_STEPS and zoomed["step_max"][-1] <= hi + ROLLUP_STEPS
    assert zoomed["max"].max() == 99.0  # the spike survives, the one outside is not in the answer
    width = lambda d: np.median(d["step_max"] - d["step_min"] + 1)  # noqa: E731
    assert width(zoomed) <= width(whole) * (hi - lo + 1) / n + ROLLUP_STEPS  # finer in proportion to the range
    assert reader.metric_downsampled("r1", "loss", buckets, (n + 10, n + 20))["bucket"].size == 0
    open_ended = reader.metric_downsampled("r1", "loss", buckets, (None, hi))
    assert open_ended["step_min"][0] == 0 and open_ended["step_max"][-1] <= hi + ROLLUP_STEPS


def test_downsample_as_of_a_moment_counts_only_points_logged_by_then(db):
    """The rollups cannot be cut at a moment, so an as-of downsample buckets the points themselves;
    points of events after the moment (by their Kafka timestamp) are left out."""
    client, database = db
    n = 20_000  # wide enough that a current read would use the rollups
    insert_points(client, database, np.arange(n), np.arange(n, dtype=np.float64), chunks=1)
    # the events log: offsets 0..n-1 on partition 0, the first half appended at t=1000, the rest at t=2000
    offsets = np.arange(n, dtype=np.uint64)
    client.insert_arrow(f"{database}.events", pa.table({
        "src_partition": np.zeros(n, np.uint32), "src_offset": offsets, "event_type": ["metrics_logged"] * n,
        "kafka_timestamp_ms": np.where(offsets < n // 2, 1000, 2000).astype(np.int64)}))
    reader = MlflowReader(client, database)
    now = reader.metric_downsampled("r1", "loss", 100)
    assert now["points"].sum() == n and now["step_max"].max() == n - 1
    early_steps = np.arange(n // 2)  # insert_points gives the point of step s (its index) src_offset s
    then = reader.metric_downsampled("r1", "loss", 100, as_of_ms=1500)
    assert then["points"].sum() == n // 2
    assert then["step_min"].min() == early_steps[0] and then["step_max"].max() == early_steps[-1]
    assert set(then["max"]) <= set(early_steps.astype(np.float64))  # value == step: only early points
    zoomed = reader.metric_downsampled("r1", "loss", 100, (0, 99), as_of_ms=1500)
    assert zoomed["points"].sum() == np.count_nonzero(early_steps <= 99)
    assert reader.metric_downsampled("r1", "loss", 100, as_of_ms=500)["points"].size == 0
