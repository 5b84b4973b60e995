"""The dispatcher's Prometheus metrics, in one place (label values are bounded: no tenant ids)."""

from __future__ import annotations

import functools

from aforo.shared.metrics import LATENCY_BUCKETS, Counter, Gauge, Histogram

DELIVERIES = Counter(
    "aforo_dispatcher_deliveries_total",
    "Delivery-log rows written, by status and channel.",
    ["status", "channel"],
)


@functools.cache
def deliveries_counted(status: str, channel: str) -> Counter:
    """`DELIVERIES` for one status and channel (a handful of combinations), looked up once: the
    dispatcher counts every row, and `labels()` costs twice the increment."""
    return DELIVERIES.labels(status, channel)


ATTEMPT_SECONDS = Histogram(
    "aforo_dispatcher_attempt_seconds", "Duration of one webhook attempt.", buckets=LATENCY_BUCKETS
)
RETRIES_SCHEDULED = Counter(
    "aforo_dispatcher_retries_scheduled_total", "Attempts parked on a delay topic.", ["topic"]
)
RETRIES_DUE = Counter("aforo_dispatcher_retries_due_total", "Parked attempts taken up when due.")
IN_FLIGHT = Gauge("aforo_dispatcher_attempts_in_flight", "Webhook attempts being sent.")
DEAD_LETTERED = Counter("aforo_dispatcher_dead_letter_total", "Events dead-lettered.", ["reason"])
SKIPPED = Counter("aforo_dispatcher_skipped_total", "SKIPPED rows, by the gate that dropped them.", ["gate"])
DEFERRED = Counter("aforo_dispatcher_deferred_total", "Attempts deferred behind a saturated endpoint.")

RECORD_FAILURES = Counter(
    "aforo_dispatcher_record_failures_total",
    "Records whose handling failed (an outage or a bug); their partition is read again from them.",
    ["consumer"],
)
REWINDS = Counter(
    "aforo_dispatcher_rewinds_total", "Partitions sought back to a failed record.", ["consumer"]
)
LOG_FLUSH_FAILURES = Counter(
    "aforo_dispatcher_log_flush_failures_total",
    "Delivery-log flushes that failed (rows kept for the next flush; offsets not committed).",
)
COMMIT_FAILURES = Counter(
    "aforo_dispatcher_commit_failures_total", "Offset commits that failed or were deferred.", ["consumer"]
)
COMMIT_STALLED_SECONDS = Gauge(
    "aforo_dispatcher_commit_stalled_seconds",
    "How long a consumer has had finished records it could not commit (0 while commits succeed).",
    ["consumer"],
)
LOG_ROW_WAIT_SECONDS = Histogram(
    "aforo_dispatcher_log_row_wait_seconds",
    "Per delivery-log flush, how long its oldest row waited between its attempt and being stored: "
    "how far the audit trail trails the deliveries.",
    buckets=LATENCY_BUCKETS,
)
UNSTORABLE_ROWS = Counter(
    "aforo_dispatcher_log_rows_unstorable_total",
    "Delivery-log rows the database refused; each is dead-lettered with its reason.",
    ["reason"],
)
RECONCILED = Counter(
    "aforo_dispatcher_reconciled_total",
    "Deliveries taken up again by the reconciler (their next attempt was overdue and unleased).",
    ["reason"],
)

# EMAIL, SMS and PAGERDUTY (docs/channels.md).
CHANNEL_ATTEMPTS = Counter(
    "aforo_dispatcher_channel_attempts_total",
    "EMAIL, SMS and PAGERDUTY attempts, by channel and outcome (delivered, retryable, rejected, refused).",
    ["channel", "outcome"],
)
CHANNEL_ATTEMPT_SECONDS = Histogram(
    "aforo_dispatcher_channel_attempt_seconds",
    "Duration of one EMAIL, SMS or PAGERDUTY attempt, by channel.",
    ["channel"],
    buckets=LATENCY_BUCKETS,
)

# The configuration feed (config_feed.py).
CONFIG_FEED_STALENESS = Gauge(
    "aforo_dispatcher_config_feed_staleness_seconds",
    "Seconds since the fetch responses by which the config-changes feed last found the topic read to "
    "its end (past 1.8 s, cached configuration expires after config_cache_seconds again).",
)
CONFIG_CHANGES_INVALID = Counter(
    "aforo_dispatcher_config_changes_invalid_total",
    "Config-topic records that did not parse (each drops every cached answer).",
)
