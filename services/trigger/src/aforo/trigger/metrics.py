"""The trigger's Prometheus metrics, in one place (label values are bounded: no tenant ids)."""

from __future__ import annotations

from aforo.shared.metrics import LATENCY_BUCKETS, Counter, Gauge, Histogram

EVENTS_SEEN = Counter("aforo_trigger_events_total", "SYSTEM events consumed.", ["event_type"])
RULES_EVALUATED = Counter("aforo_trigger_rules_evaluated_total", "Trigger rules evaluated.")
MATCHES = Counter(
    "aforo_trigger_matches_total", "CUSTOM events derived, by source SYSTEM event.", ["event_type"]
)
EVALUATION_SECONDS = Histogram(
    "aforo_trigger_evaluation_seconds", "Rule evaluation time per SYSTEM event.", buckets=LATENCY_BUCKETS
)
DEAD_LETTERED = Counter("aforo_trigger_dead_letter_total", "Unparseable SYSTEM-event records.", ["reason"])
PUBLISH_FAILURES = Counter(
    "aforo_trigger_publish_failures_total", "Sends of derived events the broker refused (then sent again)."
)
CACHE_SIZE = Gauge("aforo_trigger_cache_definitions", "CUSTOM definitions with a rule in the cache.")
CACHE_STALENESS = Gauge(
    "aforo_trigger_cache_staleness_seconds",
    "Seconds since the cache last confirmed it had read the config topic to its end.",
)
CHANGE_LAG = Histogram(
    "aforo_trigger_config_change_lag_seconds",
    "From the API's publish of a change to its application in the cache.",
    buckets=LATENCY_BUCKETS,
)
BAD_CHANGES = Counter(
    "aforo_trigger_config_changes_invalid_total", "Config-topic records that did not parse."
)
