"""The gateway's Prometheus metrics (docs/sse.md lists them). No tenant or customer labels."""

from __future__ import annotations

from aforo.shared.metrics import LATENCY_BUCKETS, METRIC_PREFIX, Counter, Gauge, Histogram

_P = f"{METRIC_PREFIX}sse_"

OPEN_CONNECTIONS = Gauge(f"{_P}open_connections", "Open SSE streams on this process.")
CONNECTIONS_OPENED = Counter(f"{_P}connections_opened_total", "SSE streams accepted.")
CONNECTIONS_REFUSED = Counter(
    f"{_P}connections_refused_total", "SSE stream requests refused, by reason.", ["reason"]
)
DISCONNECTS = Counter(f"{_P}disconnects_total", "SSE streams ended, by reason.", ["reason"])
SLOW_CONSUMER_DISCONNECTS = Counter(
    f"{_P}slow_consumer_disconnects_total",
    "Streams cut off because the client did not drain its queue (it resumes with Last-Event-ID).",
)
EVENTS_RECEIVED = Counter(f"{_P}events_received_total", "Widget-topic records read.")
EVENTS_FANNED_OUT = Counter(
    f"{_P}events_fanned_out_total",
    "Frames queued to open streams (one per stream per event).",
    ["event_type"],
)
EVENTS_DROPPED = Counter(
    f"{_P}events_dropped_total", "Widget-topic records that reached no stream, by reason.", ["reason"]
)
EVENTS_REPLAYED = Counter(f"{_P}events_replayed_total", "Frames replayed from history on a resume.")
RESUME_MISSES = Counter(
    f"{_P}resume_misses_total", "Resumes whose Last-Event-ID was not in this replica's history."
)
FANOUT_LATENCY = Histogram(
    f"{_P}fanout_latency_seconds",
    "From the widget record's Kafka timestamp to its frames being queued to the streams.",
    buckets=LATENCY_BUCKETS,
)
HISTORY_EVENTS = Gauge(f"{_P}history_events", "Events held for Last-Event-ID resumes.")
SESSION_EXCHANGES = Counter(
    f"{_P}session_exchanges_total",
    "Bridge-token exchanges, by outcome (issued or an error code).",
    ["outcome"],
)
SESSION_REFRESHES = Counter(f"{_P}session_refreshes_total", "Session refreshes, by outcome.", ["outcome"])
