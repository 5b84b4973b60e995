"""Every metric an alert, a recording rule or a dashboard reads is one the code exports (or a
named external exporter's): a renamed metric breaks this test, not the on-call's dashboard."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from tests.deploy.manifests import K8S
from tests.deploy.metric_names import EXTERNAL, exported_metric_names, grafana_to_promql, metric_names

MONITORING = K8S / "components" / "monitoring"


@pytest.fixture(scope="module")
def exported() -> set[str]:
    return exported_metric_names()


def rule_expressions() -> tuple[list[tuple[str, str]], set[str]]:
    rule = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    rules = [r for group in rule["spec"]["groups"] for r in group["rules"]]
    recorded = {r["record"] for r in rules if "record" in r}
    return [(r.get("alert") or r["record"], r["expr"]) for r in rules], recorded


def dashboard_expressions() -> list[tuple[str, str]]:
    found = []
    for path in sorted((MONITORING / "dashboards").glob("*.json")):
        board: dict[str, Any] = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                found.append((f"{path.name}: {panel['title']}", grafana_to_promql(target["expr"])))
    return found


def unknown_metrics(expressions: list[tuple[str, str]], known: set[str]) -> list[str]:
    return [
        f"{where}: {name}"
        for where, expr in expressions
        for name in sorted(metric_names(expr))
        if name not in known
    ]


def test_the_registry_holds_every_service_s_metrics(exported: set[str]) -> None:
    for name in (
        "aforo_bridge_records_in_total",
        "aforo_trigger_cache_staleness_seconds",
        "aforo_dispatcher_attempt_seconds_bucket",
        "aforo_api_published_total",
        "aforo_sse_open_connections",
        "aforo_service_ready",
    ):
        assert name in exported


def test_rules_and_dashboards_read_only_exported_metrics(exported: set[str]) -> None:
    rules, recorded = rule_expressions()
    dashboards = dashboard_expressions()
    assert len(rules) > 20
    assert len(dashboards) > 40
    known = exported | recorded | set(EXTERNAL)
    assert unknown_metrics(rules + dashboards, known) == []


def test_an_alert_on_a_metric_that_does_not_exist_is_caught(exported: set[str]) -> None:
    rules, recorded = rule_expressions()
    broken = [*rules, ("AforoTypo", "rate(aforo_dispatcher_delivery_total[5m]) > 0")]
    assert unknown_metrics(broken, exported | recorded | set(EXTERNAL)) == [
        "AforoTypo: aforo_dispatcher_delivery_total"
    ]
