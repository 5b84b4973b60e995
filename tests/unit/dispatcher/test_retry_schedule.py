"""Retry schedule: backoff, Retry-After, delay tiers and the parked record's headers."""

import itertools
import math
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aforo.dispatcher.retry_schedule import (
    DEFAULT_DELAY_TIERS,
    MAX_BACKOFF_SECONDS,
    RetryConfig,
    RetryPlan,
    RetryRecordHeaders,
    all_retry_topics,
    delay_before_attempt,
    due_at,
    next_attempt,
    parse_retry_after,
    retry_after_for,
    retry_topic_for,
    seconds_until_due,
    tier_for_delay,
)

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
CAP = 3600.0


def test_default_schedule_is_t0_t2_t6() -> None:
    config = RetryConfig()
    delays = [delay_before_attempt(attempt, config) for attempt in range(1, config.max_retry_attempts + 1)]
    assert delays == [0.0, 2.0, 4.0]
    assert [sum(delays[: index + 1]) for index in range(len(delays))] == [0.0, 2.0, 6.0]


@pytest.mark.parametrize(
    ("attempt", "config", "delay"),
    [
        (1, RetryConfig(5, 3.0, 3.0), 0.0),
        (2, RetryConfig(5, 3.0, 3.0), 3.0),
        (4, RetryConfig(5, 3.0, 3.0), 27.0),
        (3, RetryConfig(5, 2.0, 1.0), 2.0),
        (3, RetryConfig(5, 8.0, 0.5), 4.0),
        (3, RetryConfig(5, 0.0, 2.0), 0.0),
        (40, RetryConfig(50, 2.0, 2.0), MAX_BACKOFF_SECONDS),
        (5000, RetryConfig(5000, 1.0, 10.0), MAX_BACKOFF_SECONDS),
    ],
)
def test_delay_before_attempt(attempt: int, config: RetryConfig, delay: float) -> None:
    assert delay_before_attempt(attempt, config) == delay


def test_attempts_are_numbered_from_one() -> None:
    with pytest.raises(ValueError, match="attempt"):
        delay_before_attempt(0, RetryConfig())
    with pytest.raises(ValueError, match="attempt_just_failed"):
        next_attempt(0, RetryConfig(), None, CAP)


@pytest.mark.parametrize(
    ("failed", "config", "retry_after", "cap", "plan"),
    [
        pytest.param(1, RetryConfig(), None, CAP, RetryPlan(2, 2.0), id="first retry"),
        pytest.param(2, RetryConfig(), None, CAP, RetryPlan(3, 4.0), id="second retry"),
        pytest.param(3, RetryConfig(), None, CAP, None, id="three attempts in all"),
        pytest.param(1, RetryConfig(1), None, CAP, None, id="a single attempt"),
        pytest.param(1, RetryConfig(), 30.0, CAP, RetryPlan(2, 30.0, True), id="retry-after longer"),
        pytest.param(1, RetryConfig(), 1.0, CAP, RetryPlan(2, 2.0), id="retry-after shorter is ignored"),
        pytest.param(1, RetryConfig(), 2.0, CAP, RetryPlan(2, 2.0), id="retry-after equal"),
        pytest.param(1, RetryConfig(), 0.0, CAP, RetryPlan(2, 2.0), id="retry-after date in the past"),
        pytest.param(1, RetryConfig(), 90_000.0, CAP, RetryPlan(2, CAP, True), id="retry-after capped"),
        pytest.param(1, RetryConfig(), math.inf, CAP, RetryPlan(2, CAP, True), id="retry-after infinite"),
        pytest.param(1, RetryConfig(), math.nan, CAP, RetryPlan(2, 2.0), id="retry-after nan"),
        pytest.param(1, RetryConfig(3, 60.0), 90.0, 30.0, RetryPlan(2, 60.0), id="cap below backoff"),
        pytest.param(3, RetryConfig(), 30.0, CAP, None, id="retry-after cannot add attempts"),
    ],
)
def test_next_attempt(
    failed: int, config: RetryConfig, retry_after: float | None, cap: float, plan: RetryPlan | None
) -> None:
    assert next_attempt(failed, config, retry_after, cap) == plan


def test_negative_cap_is_refused() -> None:
    with pytest.raises(ValueError, match="max_retry_after_seconds"):
        next_attempt(1, RetryConfig(), None, -1.0)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_retry_attempts": 0}, "maxRetryAttempts"),
        ({"max_retry_attempts": True}, "maxRetryAttempts"),
        ({"initial_backoff_seconds": -0.5}, "initialBackoffSeconds"),
        ({"initial_backoff_seconds": math.inf}, "initialBackoffSeconds"),
        ({"backoff_multiplier": 0.0}, "backoffMultiplier"),
        ({"backoff_multiplier": math.nan}, "backoffMultiplier"),
    ],
)
def test_retry_config_names_the_bad_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}:"):
        RetryConfig(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 120 ", 120.0),
        ("0", 0.0),
        ("999999999999999999", 999999999999999999.0),
        ("9999999999999999999", None),
        ("-5", None),
        ("+5", None),
        ("1.5", None),
        ("", None),
        ("soon", None),
        ("Mon, 23 Nov 2026 09:01:30 GMT", 90.0),
        ("Mon, 23 Nov 2026 08:00:00 GMT", 0.0),
        ("Monday, 23-Nov-26 09:00:10 GMT", 10.0),
        ("Mon Nov 23 09:00:05 2026", 5.0),
        ("Mon, 23 Nov 2026 10:00:20 +0100", 20.0),
        ("Mon, 32 Nov 2026 09:00:00 GMT", None),
    ],
)
def test_parse_retry_after(value: str, seconds: float | None) -> None:
    assert parse_retry_after(value, NOW) == seconds


def test_parse_retry_after_needs_an_aware_now() -> None:
    with pytest.raises(ValueError, match="now"):
        parse_retry_after("5", datetime(2026, 1, 1))


@pytest.mark.parametrize(
    ("status", "header", "seconds"),
    [
        (429, "7", 7.0),
        (503, "7", 7.0),
        (500, "7", None),
        (200, "7", None),
        (None, "7", None),
        (429, None, None),
    ],
)
def test_retry_after_only_on_429_and_503(
    status: int | None, header: str | None, seconds: float | None
) -> None:
    assert retry_after_for(status, header, NOW) == seconds


@pytest.mark.parametrize(
    ("delay", "tier"),
    [
        (0, 1),
        (0.5, 1),
        (1, 1),
        (1.001, 2),
        (2, 2),
        (3, 4),
        (6, 8),
        (128, 128),
        (129, 300),
        (301, 900),
        (3600, 3600),
        (3601, 3600),
        (86_400, 3600),
    ],
)
def test_tier_for_delay(delay: float, tier: int) -> None:
    assert tier_for_delay(delay) == tier


@pytest.mark.parametrize("delay", [-1.0, math.nan])
def test_tier_for_delay_refuses_bad_delays(delay: float) -> None:
    with pytest.raises(ValueError, match="delay_seconds"):
        tier_for_delay(delay)


@pytest.mark.parametrize("tiers", [(), (0, 1), (2, 1), (1, 1), (-1, 5)])
def test_tiers_must_be_positive_and_increasing(tiers: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="tiers"):
        tier_for_delay(1, tiers)


def test_retry_topics() -> None:
    assert retry_topic_for(3, "aforo.") == "aforo.dispatch.retry.4s"
    assert retry_topic_for(7200, "x.") == "x.dispatch.retry.3600s"
    assert retry_topic_for(5, "aforo.", tiers=(10, 60)) == "aforo.dispatch.retry.10s"
    topics = all_retry_topics("aforo.")
    assert len(topics) == len(DEFAULT_DELAY_TIERS)
    assert topics[0] == "aforo.dispatch.retry.1s"
    assert topics[-1] == "aforo.dispatch.retry.3600s"


def test_due_at_and_pause() -> None:
    paris = timezone(timedelta(hours=1))
    due = due_at(NOW.astimezone(paris), 2.5)
    assert due == NOW + timedelta(seconds=2.5)
    assert due.tzinfo is UTC
    assert seconds_until_due(due, NOW) == 2.5
    assert seconds_until_due(due, NOW + timedelta(seconds=10)) == 0.0


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: due_at(datetime(2026, 1, 1), 1), "now"),
        (lambda: due_at(NOW, -1), "delay_seconds"),
        (lambda: seconds_until_due(datetime(2026, 1, 1), NOW), "due"),
        (lambda: seconds_until_due(NOW, datetime(2026, 1, 1)), "now"),
    ],
)
def test_time_helpers_refuse_bad_input(call: object, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        call()  # type: ignore[operator]


def test_retry_record_headers_round_trip() -> None:
    headers = RetryRecordHeaders("ep-1", 2, NOW + timedelta(milliseconds=2001))
    wire = headers.to_kafka()
    assert wire == [
        ("aforo-endpoint-id", b"ep-1"),
        ("aforo-attempt", b"2"),
        ("aforo-due-at", str(int(NOW.timestamp()) * 1000 + 2001).encode()),
    ]
    assert RetryRecordHeaders.from_kafka([("traceparent", b"x"), *wire]) == headers


@pytest.mark.parametrize(
    ("headers", "name"),
    [
        ([("aforo-attempt", b"2"), ("aforo-due-at", b"1")], "aforo-endpoint-id"),
        (
            [("aforo-endpoint-id", b"\xff"), ("aforo-attempt", b"2"), ("aforo-due-at", b"1")],
            "aforo-endpoint-id",
        ),
        ([("aforo-endpoint-id", b"e"), ("aforo-due-at", b"1")], "aforo-attempt"),
        ([("aforo-endpoint-id", b"e"), ("aforo-attempt", b"-2"), ("aforo-due-at", b"1")], "aforo-attempt"),
        ([("aforo-endpoint-id", b"e"), ("aforo-attempt", b"0"), ("aforo-due-at", b"1")], "attempt"),
        ([("aforo-endpoint-id", b"e"), ("aforo-attempt", b"2"), ("aforo-due-at", b"soon")], "aforo-due-at"),
        (
            [("aforo-endpoint-id", b"e"), ("aforo-attempt", b"2"), ("aforo-due-at", b"999999999999999999")],
            "aforo-due-at",
        ),
    ],
)
def test_retry_record_headers_name_the_bad_header(headers: list[tuple[str, bytes]], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        RetryRecordHeaders.from_kafka(headers)


CONFIGS = st.builds(
    RetryConfig,
    max_retry_attempts=st.integers(min_value=1, max_value=40),
    initial_backoff_seconds=st.floats(min_value=0, max_value=600),
    backoff_multiplier=st.floats(min_value=1, max_value=10),
)


@given(config=CONFIGS)
def test_delays_never_decrease_when_the_multiplier_is_at_least_one(config: RetryConfig) -> None:
    delays = [delay_before_attempt(attempt, config) for attempt in range(1, config.max_retry_attempts + 1)]
    assert delays[0] == 0.0
    assert all(earlier <= later for earlier, later in itertools.pairwise(delays))
    assert all(delay <= MAX_BACKOFF_SECONDS for delay in delays)


@given(
    config=CONFIGS,
    retry_after=st.one_of(st.none(), st.floats(min_value=0, max_value=10**6)),
    cap=st.floats(min_value=0, max_value=7200),
)
def test_attempts_total_max_retry_attempts_and_retry_after_never_shortens(
    config: RetryConfig, retry_after: float | None, cap: float
) -> None:
    attempts = 1
    plan = next_attempt(attempts, config, retry_after, cap)
    while plan is not None:
        backoff = delay_before_attempt(plan.attempt, config)
        assert plan.attempt == attempts + 1
        assert backoff <= plan.delay_seconds <= max(backoff, cap)
        attempts = plan.attempt
        plan = next_attempt(attempts, config, retry_after, cap)
    assert attempts == config.max_retry_attempts


@given(delay=st.floats(min_value=0, max_value=10**6))
def test_tier_covers_the_delay_unless_capped(delay: float) -> None:
    tier = tier_for_delay(delay)
    assert tier in DEFAULT_DELAY_TIERS
    if delay <= DEFAULT_DELAY_TIERS[-1]:
        assert tier >= delay
        smaller = [candidate for candidate in DEFAULT_DELAY_TIERS if candidate < tier]
        assert all(candidate < delay for candidate in smaller)
    else:
        assert tier == DEFAULT_DELAY_TIERS[-1]
