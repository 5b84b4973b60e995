"""Per-channel metrics on the dispatcher's `/metrics`: attempts by outcome and their latency."""

from __future__ import annotations

from aforo.shared.metrics import LATENCY_BUCKETS, Counter, Histogram

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
