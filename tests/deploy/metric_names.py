"""The metric names a PromQL expression reads, and the names the services export."""

from __future__ import annotations

import importlib
import pkgutil
import re
from typing import Any, Final

import promql_parser
from prometheus_client import REGISTRY

PACKAGES: Final = (
    "aforo.shared",
    "aforo.bridge",
    "aforo.trigger",
    "aforo.dispatcher",
    "aforo.api",
    "aforo.sse_gateway",
)

EXTERNAL: Final = {
    "up": "Prometheus itself, one per scrape target",
    "kafka_consumergroup_lag": "Strimzi's Kafka Exporter (kafkaExporter in components/strimzi)",
}
"""Metrics the rules read that no aforo process exports, and who does."""

SUFFIXES: Final = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created", ""),
    "gauge": ("",),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}


def exported_metric_names() -> set[str]:
    """Every series name the five processes can expose: import all their modules, read the registry."""
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        for module in pkgutil.walk_packages(package.__path__, f"{package_name}."):
            if not module.name.endswith("__main__"):
                importlib.import_module(module.name)
    names = set()
    for family in REGISTRY.collect():
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
    return names


def grafana_to_promql(expr: str) -> str:
    """Grafana's variables replaced by values PromQL parses."""
    expr = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m")
    return re.sub(r"\$\{?(\w+)\}?", "x", expr)


def metric_names(expr: str) -> set[str]:
    found: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            name = node.name
            if name is None:
                name = next((m.value for m in node.matchers.matchers if m.name == "__name__"), None)
            if name is not None:
                found.add(name)

    promql_parser.walk(promql_parser.parse(expr), pre_visit=visit)
    return found
