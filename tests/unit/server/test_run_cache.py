"""RunDataCache: what a reader may keep, and what a stored batch makes it forget."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trackstream.consumers.materializer import BatchChanges, Materializer
from trackstream.schemas import MetricBatch
from trackstream.server.own_appends import OwnAppends
from trackstream.server.run_cache import _TRACKED_GENERATIONS, RunDataCache, latest_points, patch_run_data
from tests.unit.consumers.events import EventLog
from tests.unit.consumers.test_materializer import EmptyStateReader


def data(tag):
    return {"metrics": [], "params": [], "tags": [{"key": "t", "value": tag}]}


def test_fetched_data_is_served_until_a_batch_touches_the_run():
    cache = RunDataCache()
    cache.put_many({"a": data("1"), "b": data("1")}, cache.generation())
    assert cache.get_many(["a", "b", "c"]) == {"a": data("1"), "b": data("1")}
    cache.invalidate({"a"})
    assert cache.get_many(["a", "b"]) == {"b": data("1")}


def test_data_fetched_while_a_batch_changed_the_run_is_not_kept():
    cache = RunDataCache()
    started = cache.generation()
    cache.invalidate({"a"})                              # the worker stored a batch touching "a" meanwhile
    cache.put_many({"a": data("old"), "b": data("1")}, started)
    assert cache.get_many(["a", "b"]) == {"b": data("1")}
    cache.put_many({"a": data("new")}, cache.generation())  # a fetch begun after the batch is fine
    assert cache.get_many(["a"]) == {"a": data("new")}


def test_the_least_recently_used_runs_are_dropped_beyond_capacity():
    cache = RunDataCache(capacity=2)
    cache.put_many({"a": data("1"), "b": data("1")}, cache.generation())
    cache.get_many(["a"])
    cache.put_many({"c": data("1")}, cache.generation())
    assert set(cache.get_many(["a", "b", "c"])) == {"a", "c"}


def test_a_zero_capacity_cache_keeps_nothing():
    cache = RunDataCache(capacity=0)
    cache.put_many({"a": data("1")}, cache.generation())
    assert cache.get_many(["a"]) == {}


# -- a cache that holds the gateway's own appends (the all-in-one server) ---------------------------------





def metrics_record(points, params=(), tags=()):
    """A metrics_logged record of (key, step, timestamp, value) points."""
    keys = sorted({p[0] for p in points})
    batch = MetricBatch(keys, np.array([keys.index(p[0]) for p in points], np.uint32),
                        np.array([p[1] for p in points], np.int64), np.array([p[2] for p in points], np.int64),
                        np.array([p[3] for p in points], np.float64))
    return {**batch.to_record_fields(), "params": list(params), "tags": list(tags)}


def entry(metrics=(), params=(), tags=()):
    return {"metrics": [{"key": k, "value": v, "timestamp": t, "step": s} for k, s, t, v in metrics],
            "params": [{"key": k, "value": v} for k, v in params],
            "tags": [{"key": k, "value": v} for k, v in tags], "info": {"run_id": "r"}}


def test_a_metric_event_patches_each_keys_latest_point_as_clickhouse_max_of_step_timestamp_value_does():
    cached = entry(metrics=[("loss", 5, 100, 0.5), ("acc", 1, 100, 0.1)], params=[("lr", "0.1")], tags=[("t", "a")])
    record = metrics_record([("loss", 4, 999, 9.0), ("loss", 6, 50, 0.2), ("loss", 6, 50, 0.3), ("f1", 0, 1, 0.7)],
                            params=[{"key": "bs", "value": "8"}, {"key": "lr", "value": "0.1"}],
                            tags=[{"key": "t", "value": "b"}])
    patched = patch_run_data(cached, "metrics_logged", record)
    assert patched == entry(metrics=[("acc", 1, 100, 0.1), ("f1", 0, 1, 0.7), ("loss", 6, 50, 0.3)],
                            params=[("bs", "8"), ("lr", "0.1")], tags=[("t", "b")])
    assert cached["tags"] == [{"key": "t", "value": "a"}]  # the cached entry itself is never changed


def test_latest_points_agree_with_a_plain_max_over_random_batches():
    rng = np.random.default_rng(7)
    for _ in range(50):
        n = int(rng.integers(1, 40))
        points = [(f"k{rng.integers(3)}", int(rng.integers(3)), int(rng.integers(3)), float(rng.integers(3)) / 2)
                  for _ in range(n)]
        expected = {}
        for key, *point in points:
            expected[key] = max(expected.get(key, tuple(point)), tuple(point))
        batch = MetricBatch.from_record(metrics_record(points))
        assert latest_points(batch) == expected


@pytest.mark.parametrize("event_type, record", [
    ("metrics_logged", metrics_record([("loss", 1, 1, math.nan)])),           # NaN: ClickHouse orders it its own way
    ("params_set", {"params": [{"key": "lr", "value": "0.2"}]}),              # a changed param is refused whole
    ("tags_set", {"tags": [{"key": "mlflow.runName", "value": "renamed"}]}),  # the name is the run info's too
    ("tag_deleted", {"key": "mlflow.runName"}),
    ("run_status_changed", {"status": "FAILED", "end_time_ms": 1}),           # the run info: not patched
    ("inputs_logged", {"datasets": []}),
])
def test_events_whose_outcome_the_gateway_cannot_be_sure_of_are_not_patched(event_type, record):
    assert patch_run_data(entry(params=[("lr", "0.1")]), event_type, record) is None


def test_a_deleted_tag_leaves_the_entry():
    patched = patch_run_data(entry(tags=[("a", "1"), ("b", "2")]), "tag_deleted", {"key": "a"})
    assert patched["tags"] == [{"key": "b", "value": "2"}]


def own_cache():
    return RunDataCache(own_appends=OwnAppends())


def own_append(cache, run_id, partition, offset, event_type, record):
    cache.own_appends.add(partition, offset)
    cache.apply_own_append(run_id, partition, offset, event_type, record)


def test_an_own_append_patches_the_cached_run_and_survives_the_batch_that_stores_it():
    cache = own_cache()
    cache.put_many({"r": entry()}, cache.generation())
    log = EventLog()
    materializer = Materializer(EmptyStateReader())
    materializer.process([log.run_created("r")])  # an earlier batch
    fields = metrics_record([("loss", 3, 30, 0.25)])
    msg = log.add("metrics_logged", run_id="r", **fields)
    own_append(cache, "r", msg.partition, msg.offset, "metrics_logged", fields)
    assert cache.get("r")["metrics"] == [{"key": "loss", "value": 0.25, "timestamp": 30, "step": 3}]
    changes = materializer.process([msg]).changes()
    assert changes.run_events["r"] == {(msg.partition, msg.offset)}
    cache.forget(changes, {msg.partition: msg.offset})
    assert cache.get("r")["metrics"][0]["step"] == 3


def test_a_batch_with_another_writers_event_on_the_run_forgets_it():
    cache = own_cache()
    cache.put_many({"r": entry()}, cache.generation())
    log = EventLog()
    log.run_created("r")
    fields = metrics_record([("loss", 3, 30, 0.25)])
    own = log.add("metrics_logged", run_id="r", **fields)
    own_append(cache, "r", own.partition, own.offset, "metrics_logged", fields)
    log.add("tags_set", run_id="r", tags=[{"key": "sdk", "value": "yes"}])  # appended straight to Kafka
    cache.forget(Materializer(EmptyStateReader()).process(log.messages).changes(), {0: log.messages[-1].offset})
    assert cache.get("r") is None


def test_an_own_event_the_worker_refused_forgets_the_patched_run():
    cache = own_cache()
    cache.put_many({"r": entry()}, cache.generation())
    log = EventLog()
    log.run_created("r")
    log.add("run_deleted", run_id="r")  # another writer deleted the run before this gateway's metric
    state_before = Materializer(EmptyStateReader())
    state_before.process(log.messages)
    fields = metrics_record([("loss", 3, 30, 0.25)])
    own = log.add("metrics_logged", run_id="r", **fields)
    own_append(cache, "r", own.partition, own.offset, "metrics_logged", fields)
    assert cache.get("r")["metrics"]  # patched at the acknowledgement ...
    changes = state_before.process([own]).changes()
    assert changes.refused_runs == {"r"} and "r" not in changes.run_events
    cache.forget(changes, {0: own.offset})
    assert cache.get("r") is None  # ... and forgotten once the worker refused it


def test_nothing_fetched_is_kept_while_an_own_append_on_the_run_is_not_stored():
    cache = own_cache()
    own_append(cache, "r", 0, 10, "metrics_logged", metrics_record([("loss", 1, 1, 1.0)]))
    cache.put_many({"r": entry()}, cache.generation())  # fetched before the worker stored offset 10
    assert cache.get("r") is None
    cache.forget(BatchChanges(), {0: 10})
    cache.put_many({"r": entry()}, cache.generation())
    assert cache.get("r") == entry()


def test_a_fetch_begun_before_an_own_append_is_not_kept():
    cache = own_cache()
    started = cache.generation()
    own_append(cache, "r", 0, 10, "tags_set", {"tags": [{"key": "t", "value": "v"}]})
    cache.forget(BatchChanges({"r"}, [], {"r": {(0, 10)}}), {0: 10})
    cache.put_many({"r": entry()}, started)  # read before the tag was stored
    assert cache.get("r") is None


def test_without_own_appends_every_change_forgets_and_own_appends_are_ignored():
    cache = RunDataCache()
    assert not cache.holds_own_writes
    cache.put_many({"r": entry()}, cache.generation())
    cache.apply_own_append("r", 0, 1, "tags_set", {"tags": [{"key": "t", "value": "v"}]})
    assert cache.get("r") == entry()
    cache.forget(BatchChanges({"r"}, [], {"r": {(0, 1)}}), {0: 1})
    assert cache.get("r") is None


def test_own_appends_to_ever_new_runs_keep_the_change_records_bounded():
    """A long-lived server appends to millions of runs: what it remembers of their changes stays
    within the generations a fetch can span."""
    cache = RunDataCache(capacity=10, own_appends=OwnAppends())
    appends = 3 * _TRACKED_GENERATIONS
    for n in range(appends):
        cache.apply_own_append(f"run-{n}", 0, n, "tags_set", {"tags": []})
    assert len(cache._touched_at) <= 2 * _TRACKED_GENERATIONS < appends
