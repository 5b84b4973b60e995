"""Token buckets: a burst, then a steady rate, per key; the wait a refused caller is told."""

from __future__ import annotations

import pytest

from aforo.shared.rate_limit import TokenBuckets, retry_after_header


def test_a_burst_then_the_rate() -> None:
    buckets = TokenBuckets(rate_per_second=2.0, burst=3)
    assert [buckets.take("t1", 0.0) for _ in range(3)] == [None, None, None]
    assert buckets.take("t1", 0.0) == pytest.approx(0.5)
    assert buckets.take("t1", 0.5) is None  # one token back after 1/rate seconds
    assert buckets.take("t1", 0.5) == pytest.approx(0.5)
    assert [buckets.take("t1", 100.0) for _ in range(3)] == [None, None, None]  # refills to the burst only
    assert buckets.take("t1", 100.0) is not None


def test_keys_have_their_own_buckets() -> None:
    buckets = TokenBuckets(rate_per_second=1.0, burst=1)
    assert buckets.take("t1", 0.0) is None
    assert buckets.take("t1", 0.0) is not None
    assert buckets.take("t2", 0.0) is None


def test_a_rate_of_zero_turns_limiting_off() -> None:
    buckets = TokenBuckets(rate_per_second=0, burst=1)
    assert all(buckets.take("t1", 0.0) is None for _ in range(10_000))
    assert len(buckets) == 0


def test_the_least_recently_used_key_is_forgotten_first() -> None:
    buckets = TokenBuckets(rate_per_second=1.0, burst=1, max_keys=2)
    for key in ("a", "b", "c"):
        assert buckets.take(key, 0.0) is None
    assert len(buckets) == 2
    assert buckets.take("a", 0.0) is None  # forgotten, so a fresh bucket
    assert buckets.take("c", 0.0) is not None


def test_a_clock_going_backwards_adds_no_tokens() -> None:
    buckets = TokenBuckets(rate_per_second=1.0, burst=1)
    assert buckets.take("t1", 10.0) is None
    assert buckets.take("t1", 5.0) is not None


@pytest.mark.parametrize(
    ("seconds", "header"), [(0.001, "1"), (0.5, "1"), (1.0, "1"), (1.2, "2"), (30.0, "30")]
)
def test_retry_after_is_whole_seconds_never_zero(seconds: float, header: str) -> None:
    assert retry_after_header(seconds) == header
