"""When a failed webhook delivery is tried again, and through which delay topic it waits.

An endpoint's `maxRetryAttempts` counts every attempt, the first included; attempt 1 goes out at once
and attempt n >= 2 waits `initialBackoffSeconds * backoffMultiplier ** (n - 2)` (defaults: t+0, t+2 s,
t+6 s). A receiver's `Retry-After` (on 429/503) may lengthen a wait, up to a cap, never shorten it.
A waiting delivery is parked on the smallest delay tier topic whose delay covers it, with the time it
is due; the tier's consumer pauses a partition until its head record is due. See docs/dispatch.md.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Final

from aforo.shared.delivery import Channel
from aforo.shared.topics import DELAY_TIERS, retry_topic_suffix
from aforo.shared.webhook_endpoints import (
    DEFAULT_BACKOFF_MULTIPLIER,
    DEFAULT_INITIAL_BACKOFF_SECONDS,
    DEFAULT_MAX_RETRY_ATTEMPTS,
)

__all__ = [
    "DEFAULT_BACKOFF_MULTIPLIER",
    "DEFAULT_INITIAL_BACKOFF_SECONDS",
    "DEFAULT_MAX_RETRY_ATTEMPTS",
]


MAX_BACKOFF_SECONDS: Final = 86_400.0
"""No computed backoff exceeds a day, whatever the endpoint asks (and `multiplier ** n` cannot overflow)."""

DEFAULT_MAX_RETRY_AFTER_SECONDS: Final = 3_600.0
"""Suggested default for the dispatcher's `max_retry_after_seconds` setting: the largest tier."""

DEFAULT_DELAY_TIERS: Final = DELAY_TIERS
"""Delay topics `<prefix>dispatch.retry.<n>s`, in seconds (the topic registry owns them)."""

RETRY_AFTER_STATUSES: Final = frozenset({429, 503})
"""Statuses whose `Retry-After` header is honoured (RFC 9110 defines it for these and 3xx)."""


@dataclass(frozen=True)
class RetryConfig:
    """An endpoint's retry settings; the field names mirror `maxRetryAttempts` & co."""

    max_retry_attempts: int = DEFAULT_MAX_RETRY_ATTEMPTS
    initial_backoff_seconds: float = DEFAULT_INITIAL_BACKOFF_SECONDS
    backoff_multiplier: float = DEFAULT_BACKOFF_MULTIPLIER

    def __post_init__(self) -> None:
        if isinstance(self.max_retry_attempts, bool) or self.max_retry_attempts < 1:
            raise ValueError(f"maxRetryAttempts: must be an integer >= 1, got {self.max_retry_attempts!r}")
        if not math.isfinite(self.initial_backoff_seconds) or self.initial_backoff_seconds < 0:
            raise ValueError(
                f"initialBackoffSeconds: must be a finite number >= 0, got {self.initial_backoff_seconds!r}"
            )
        if not math.isfinite(self.backoff_multiplier) or self.backoff_multiplier <= 0:
            raise ValueError(
                f"backoffMultiplier: must be a finite number > 0, got {self.backoff_multiplier!r}"
            )


@dataclass(frozen=True)
class RetryPlan:
    """The next attempt of a failed delivery: its number and how long to wait before it."""

    attempt: int
    delay_seconds: float
    retry_after_honoured: bool = False


def delay_before_attempt(attempt: int, config: RetryConfig) -> float:
    """Seconds between the previous attempt failing and `attempt` starting (0 for the first)."""
    if attempt < 1:
        raise ValueError(f"attempt: attempts are numbered from 1, got {attempt}")
    if attempt == 1:
        return 0.0
    if config.initial_backoff_seconds == 0:
        return 0.0
    try:
        delay = config.initial_backoff_seconds * config.backoff_multiplier ** (attempt - 2)
    except OverflowError:
        return MAX_BACKOFF_SECONDS
    return min(delay, MAX_BACKOFF_SECONDS)


def next_attempt(
    attempt_just_failed: int,
    config: RetryConfig,
    retry_after_seconds: float | None,
    max_retry_after_seconds: float,
) -> RetryPlan | None:
    """The retry after a retryable failure, or None when the attempts are used up (FAILED, dead letter).

    A `Retry-After` longer than the backoff is honoured up to `max_retry_after_seconds`; one shorter
    than the backoff is ignored, so a receiver cannot make us retry faster than the endpoint's policy.
    """
    if attempt_just_failed < 1:
        raise ValueError(f"attempt_just_failed: attempts are numbered from 1, got {attempt_just_failed}")
    if max_retry_after_seconds < 0 or math.isnan(max_retry_after_seconds):
        raise ValueError(f"max_retry_after_seconds: must be >= 0, got {max_retry_after_seconds}")
    if attempt_just_failed >= config.max_retry_attempts:
        return None
    attempt = attempt_just_failed + 1
    backoff = delay_before_attempt(attempt, config)
    if retry_after_seconds is None or math.isnan(retry_after_seconds):
        return RetryPlan(attempt, backoff)
    honoured = min(retry_after_seconds, max_retry_after_seconds)
    if honoured > backoff:
        return RetryPlan(attempt, honoured, retry_after_honoured=True)
    return RetryPlan(attempt, backoff)


_DELTA_SECONDS: Final = re.compile(r"[0-9]{1,18}")


def parse_retry_after(value: str, now: datetime) -> float | None:
    """A `Retry-After` header value as seconds from `now`; None when it is neither form of RFC 9110.

    delta-seconds ("120") or an HTTP-date ("Wed, 21 Oct 2015 07:28:00 GMT", also the obsolete RFC 850
    and asctime forms, read as GMT). A date in the past means 0. More than 18 digits is refused rather
    than turned into an enormous number; the cap would clamp it anyway.
    """
    _require_aware(now, "now")
    text = value.strip()
    if _DELTA_SECONDS.fullmatch(text):
        return float(int(text))
    if not text or text[0].isdigit() or text[0] in "+-":
        return None
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # HTTP dates are always GMT
    return max(0.0, (moment - now).total_seconds())


def retry_after_for(status: int | None, header_value: str | None, now: datetime) -> float | None:
    """The `Retry-After` to honour for a response: parsed only on 429 and 503, else None."""
    if status not in RETRY_AFTER_STATUSES or header_value is None:
        return None
    return parse_retry_after(header_value, now)


def _checked_tiers(tiers: Sequence[int]) -> Sequence[int]:
    if not tiers:
        raise ValueError("tiers: at least one delay tier is required")
    if any(tier <= 0 for tier in tiers) or any(a >= b for a, b in itertools.pairwise(tiers)):
        raise ValueError(f"tiers: must be positive and strictly increasing, got {tuple(tiers)}")
    return tiers


def tier_for_delay(delay_seconds: float, tiers: Sequence[int] = DEFAULT_DELAY_TIERS) -> int:
    """The smallest tier >= the delay; the largest tier when the delay exceeds them all.

    A record in a tier is never due later than the tier after it was written (unless capped), which
    bounds how long a record can wait behind the head of its partition.
    """
    if math.isnan(delay_seconds) or delay_seconds < 0:
        raise ValueError(f"delay_seconds: must be >= 0, got {delay_seconds}")
    for tier in _checked_tiers(tiers):
        if tier >= delay_seconds:
            return tier
    return tiers[-1]


def retry_topic(tier: int, topic_prefix: str) -> str:
    """The delay topic of one tier: `<prefix>dispatch.retry.<tier>s`."""
    return f"{topic_prefix}{retry_topic_suffix(tier)}"


def retry_topic_for(
    delay_seconds: float, topic_prefix: str, tiers: Sequence[int] = DEFAULT_DELAY_TIERS
) -> str:
    """The delay topic a retry waiting `delay_seconds` is parked on."""
    return retry_topic(tier_for_delay(delay_seconds, tiers), topic_prefix)


def all_retry_topics(topic_prefix: str, tiers: Iterable[int] = DEFAULT_DELAY_TIERS) -> tuple[str, ...]:
    """Every delay topic, for creating them and subscribing the retry consumers."""
    return tuple(retry_topic(tier, topic_prefix) for tier in _checked_tiers(tuple(tiers)))


def due_at(now: datetime, delay_seconds: float) -> datetime:
    """When a retry parked at `now` for `delay_seconds` becomes due (UTC)."""
    _require_aware(now, "now")
    if math.isnan(delay_seconds) or delay_seconds < 0:
        raise ValueError(f"delay_seconds: must be >= 0, got {delay_seconds}")
    return now.astimezone(UTC) + timedelta(seconds=delay_seconds)


def seconds_until_due(due: datetime, now: datetime) -> float:
    """How long a tier consumer keeps a partition paused for its head record; 0 when already due."""
    _require_aware(due, "due")
    _require_aware(now, "now")
    return max(0.0, (due - now).total_seconds())


DUE_AT_HEADER: Final = "aforo-due-at"
ATTEMPT_HEADER: Final = "aforo-attempt"
ENDPOINT_ID_HEADER: Final = "aforo-endpoint-id"
ATTEMPT_BASE_HEADER: Final = "aforo-attempt-base"
CHANNEL_HEADER: Final = "aforo-channel"
WAITING_SINCE_HEADER: Final = "aforo-waiting-since"
_MAX_HEADER_DIGITS: Final = 18


@dataclass(frozen=True)
class RetryRecordHeaders:
    """What a parked retry carries beside the original envelope bytes: which endpoint, which attempt, when.

    Headers rather than a wrapper value so the record's value stays the exact envelope bytes that are
    signed and POSTed, and the key stays `tenantId:customerId`. `due_at` travels as epoch milliseconds.
    """

    endpoint_id: str
    attempt: int
    due_at: datetime
    attempt_base: int = 0
    """Where the retry budget of this chain started (a replay of a FAILED delivery starts a new one)."""
    channel: Channel = Channel.WEBHOOK
    waiting_since: datetime | None = None
    """Set on a retry parked again to wait for its previous attempt's row (epoch ms on the wire)."""

    def __post_init__(self) -> None:
        _require_aware(self.due_at, "due_at")
        if self.waiting_since is not None:
            _require_aware(self.waiting_since, "waiting_since")
        if not self.endpoint_id:
            raise ValueError("endpoint_id: must not be empty")
        if self.attempt < 1:
            # Attempt 1 is parked too: deferred behind a saturated endpoint.
            raise ValueError(f"attempt: attempts are numbered from 1, got {self.attempt}")
        if not 0 <= self.attempt_base < self.attempt:
            raise ValueError(f"attempt_base: must be in [0, attempt), got {self.attempt_base}")

    def to_kafka(self) -> list[tuple[str, bytes]]:
        due_ms = round(self.due_at.timestamp() * 1000)
        headers = [
            (ENDPOINT_ID_HEADER, self.endpoint_id.encode()),
            (ATTEMPT_HEADER, str(self.attempt).encode()),
            (DUE_AT_HEADER, str(due_ms).encode()),
        ]
        if self.attempt_base:
            headers.append((ATTEMPT_BASE_HEADER, str(self.attempt_base).encode()))
        if self.channel is not Channel.WEBHOOK:
            headers.append((CHANNEL_HEADER, self.channel.value.encode()))
        if self.waiting_since is not None:
            headers.append((WAITING_SINCE_HEADER, str(round(self.waiting_since.timestamp() * 1000)).encode()))
        return headers

    @classmethod
    def from_kafka(cls, headers: Iterable[tuple[str, bytes]]) -> RetryRecordHeaders:
        """Read them back; ValueError naming the header that is missing or malformed (dead-letter it)."""
        found = dict(headers)
        endpoint_id = _header_text(found, ENDPOINT_ID_HEADER)
        attempt = _header_integer(found, ATTEMPT_HEADER)
        due_ms = _header_integer(found, DUE_AT_HEADER)
        try:
            due = datetime.fromtimestamp(due_ms / 1000, tz=UTC)
        except (OverflowError, OSError, ValueError) as error:
            raise ValueError(f"{DUE_AT_HEADER}: not a usable epoch-milliseconds value ({due_ms})") from error
        attempt_base = _header_integer(found, ATTEMPT_BASE_HEADER) if ATTEMPT_BASE_HEADER in found else 0
        channel_text = (
            _header_text(found, CHANNEL_HEADER) if CHANNEL_HEADER in found else Channel.WEBHOOK.value
        )
        try:
            channel = Channel(channel_text)
        except ValueError:
            raise ValueError(f"{CHANNEL_HEADER}: unknown channel {channel_text!r}") from None
        waiting_since = None
        if WAITING_SINCE_HEADER in found:
            waiting_ms = _header_integer(found, WAITING_SINCE_HEADER)
            try:
                waiting_since = datetime.fromtimestamp(waiting_ms / 1000, tz=UTC)
            except (OverflowError, OSError, ValueError) as error:
                raise ValueError(f"{WAITING_SINCE_HEADER}: not a usable epoch-milliseconds value") from error
        return cls(endpoint_id, attempt, due, attempt_base, channel, waiting_since)


def _header_text(headers: dict[str, bytes], name: str) -> str:
    raw = headers.get(name)
    if raw is None:
        raise ValueError(f"{name}: header missing")
    try:
        return raw.decode()
    except UnicodeDecodeError as error:
        raise ValueError(f"{name}: not UTF-8") from error


def _header_integer(headers: dict[str, bytes], name: str) -> int:
    text = _header_text(headers, name)
    if not (0 < len(text) <= _MAX_HEADER_DIGITS and text.isascii() and text.isdigit()):
        raise ValueError(f"{name}: expected a non-negative integer, got {text[:40]!r}")
    return int(text)


def _require_aware(moment: datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name}: must be timezone-aware")
