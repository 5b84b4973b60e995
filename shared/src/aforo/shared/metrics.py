"""prometheus-client helpers shared by every service.

Each process exposes the default registry on `/metrics`; metric names start with `aforo_` and never
carry a tenant or customer id as a label (unbounded cardinality), only event types, topics, reasons.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import generate_latest as _generate_latest

METRIC_PREFIX = "aforo_"

# Latency buckets (seconds) sized for in-process work through to a 5 s webhook attempt.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def render_metrics(registry: CollectorRegistry = REGISTRY) -> tuple[bytes, str]:
    """The exposition body and its content type, for the `/metrics` route."""
    return _generate_latest(registry), CONTENT_TYPE_LATEST


SERVICE_UP = Gauge(
    f"{METRIC_PREFIX}service_ready",
    "1 while the service's dependencies answer its readiness check.",
    ["service"],
)
SERVICE_INFO = Gauge(f"{METRIC_PREFIX}service_info", "Static build info.", ["service", "version"])

__all__ = [
    "LATENCY_BUCKETS",
    "METRIC_PREFIX",
    "SERVICE_INFO",
    "SERVICE_UP",
    "Counter",
    "Gauge",
    "Histogram",
    "render_metrics",
]
