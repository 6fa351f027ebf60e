"""The failed-sign-in token buckets, on an injected clock."""

from __future__ import annotations

import pytest

from trackstream.server.login_limits import FailureLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


ADDRESS = ("address", "10.0.0.7")
ALICE = ("user", "alice")


def test_a_burst_of_failures_then_one_per_refill_interval() -> None:
    clock = Clock()
    limiter = FailureLimiter(burst=3, per_minute=6, clock=clock)  # a token every 10 s
    assert [limiter.take([ADDRESS]) for _ in range(3)] == [0, 0, 0]
    assert limiter.take([ADDRESS]) == pytest.approx(10.0)
    clock.now += 4
    assert limiter.take([ADDRESS]) == pytest.approx(6.0)
    clock.now += 6
    assert limiter.take([ADDRESS]) == 0
    assert limiter.take([ADDRESS]) == pytest.approx(10.0)


def test_refill_never_exceeds_the_burst() -> None:
    clock = Clock()
    limiter = FailureLimiter(burst=2, per_minute=60, clock=clock)
    limiter.take([ADDRESS])
    clock.now += 3600
    assert [limiter.take([ADDRESS]) for _ in range(3)][:2] == [0, 0]
    assert limiter.retry_after([ADDRESS]) == pytest.approx(1.0)


def test_good_passwords_give_their_token_back() -> None:
    limiter = FailureLimiter(burst=2, per_minute=1, clock=Clock())
    for _ in range(10):
        assert limiter.take([ADDRESS, ALICE]) == 0
        limiter.give_back([ADDRESS, ALICE])
    assert limiter.retry_after([ADDRESS, ALICE]) == 0


def test_the_emptiest_bucket_decides_and_a_refused_attempt_takes_nothing() -> None:
    clock = Clock()
    limiter = FailureLimiter(burst=2, per_minute=60, clock=clock)
    limiter.take([("address", "a"), ALICE])
    limiter.take([("address", "b"), ALICE])  # alice's bucket is empty now, from two addresses
    assert limiter.take([("address", "c"), ALICE]) == pytest.approx(1.0)
    assert limiter.retry_after([("address", "c")]) == 0  # the refused attempt cost address c nothing
    assert limiter.take([("address", "c")]) == 0  # other users from c are not held up


def test_keys_are_independent_and_unseen_keys_are_not_stored_by_asking() -> None:
    limiter = FailureLimiter(burst=1, per_minute=1, clock=Clock())
    assert limiter.take([ADDRESS]) == 0
    assert limiter.retry_after([("address", "10.0.0.8")]) == 0
    assert limiter.tracked() == 1


def test_memory_is_bounded_full_buckets_go_first_then_least_recently_used() -> None:
    clock = Clock()
    limiter = FailureLimiter(burst=1, per_minute=60, clock=clock, max_keys=3)
    for name in "abc":
        limiter.take([("address", name)])
    clock.now += 2  # a, b, c have refilled
    limiter.take([("address", "d")])
    assert limiter.tracked() == 1
    for name in "efg":
        limiter.take([("address", name)])
    assert limiter.tracked() == 3
    assert limiter.retry_after([("address", "d")]) == 0  # the least recently used was dropped
    assert limiter.retry_after([("address", "g")]) > 0


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="burst"):
        FailureLimiter(burst=0, per_minute=1)
    with pytest.raises(ValueError, match="per_minute"):
        FailureLimiter(burst=1, per_minute=0)
