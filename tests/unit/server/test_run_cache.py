"""RunDataCache: what a reader may keep, and what a stored batch makes it forget."""

from __future__ import annotations

from trackstream.server.run_cache import RunDataCache


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
