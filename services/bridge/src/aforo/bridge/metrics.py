"""The bridge's Prometheus metrics, in one place (label values are bounded: no tenant ids)."""

from __future__ import annotations

from aforo.shared.metrics import LATENCY_BUCKETS, Counter, Gauge, Histogram

RECORDS_IN = Counter("aforo_bridge_records_in_total", "Producer records consumed.", ["topic"])
RECORDS_OUT = Counter(
    "aforo_bridge_records_out_total",
    "Envelopes published, acknowledged by the broker.",
    ["topic", "event_type"],
)
DEAD_LETTERED = Counter(
    "aforo_bridge_dead_letter_total", "Producer records sent to the dead-letter topic.", ["reason"]
)
CONSUMER_LAG = Gauge("aforo_bridge_consumer_lag", "Records behind the partition end.", ["topic", "partition"])
BATCH_SECONDS = Histogram(
    "aforo_bridge_batch_processing_seconds",
    "From fetch to committed offsets, per batch.",
    buckets=LATENCY_BUCKETS,
)
RECORD_AGE_SECONDS = Histogram(
    "aforo_bridge_record_age_seconds",
    "From the producer record's timestamp to the broker's ack of its envelope.",
    buckets=LATENCY_BUCKETS,
)
PUBLISH_FAILURES = Counter("aforo_bridge_publish_failures_total", "Batches whose output the broker refused.")
