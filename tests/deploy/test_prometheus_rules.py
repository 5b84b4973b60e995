"""`promtool check rules` and `promtool test rules` on the PrometheusRule, each alert with a runbook
section in docs/operations.md; a broken rule or a broken expectation fails."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.manifests import K8S, ROOT

MONITORING = K8S / "components" / "monitoring"
OPERATIONS = ROOT / "docs" / "operations.md"
RUNBOOK_PREFIX = "https://github.com/aforo-notify/aforo-notify/blob/main/docs/operations.md#"


def prometheus_rule() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    return document


def alerts(rule: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for group in rule["spec"]["groups"] for r in group["rules"] if "alert" in r]


def promtool(*arguments: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [shutil.which("promtool") or "/usr/bin/promtool", *arguments],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=cwd,
    )


def lay_out(workdir: Path, rule: dict[str, Any], tests: str) -> None:
    """promtool reads plain rule files: the PrometheusRule's groups, beside the unit tests."""
    (workdir / "aforo.rules.yaml").write_text(
        yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False)
    )
    (workdir / "rules-test.yaml").write_text(tests)


def test_promtool_checks_and_unit_tests_pass(tmp_path: Path) -> None:
    lay_out(tmp_path, prometheus_rule(), (MONITORING / "tests" / "rules-test.yaml").read_text())
    checked = promtool("check", "rules", "aforo.rules.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", "rules-test.yaml", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_has_a_unit_test_that_fires_it_and_one_that_does_not() -> None:
    tests = yaml.safe_load((MONITORING / "tests" / "rules-test.yaml").read_text())
    cases = [case for test in tests["tests"] for case in test.get("alert_rule_test", [])]
    for alert in alerts(prometheus_rule()):
        own = [case for case in cases if case["alertname"] == alert["alert"]]
        assert any(case.get("exp_alerts") for case in own), f"{alert['alert']}: no firing case"
        assert any(not case.get("exp_alerts") for case in own), f"{alert['alert']}: no quiet case"


def test_every_alert_has_a_severity_a_summary_and_a_runbook_section() -> None:
    headings = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in OPERATIONS.read_text().splitlines()
        if line.startswith("#")
    }
    for alert in alerts(prometheus_rule()):
        name = alert["alert"]
        assert alert["labels"]["severity"] in {"warning", "critical"}, name
        assert alert["annotations"]["summary"], name
        url = alert["annotations"]["runbook_url"]
        assert url == RUNBOOK_PREFIX + name.lower(), name
        assert name.lower() in headings, f"docs/operations.md has no section {name}"


def test_promtool_catches_a_broken_expression(tmp_path: Path) -> None:
    rule = prometheus_rule()
    alerts(rule)[0]["expr"] = "sum(rate(aforo_dispatcher_deliveries_total[5m]"
    lay_out(tmp_path, rule, "")
    checked = promtool("check", "rules", "aforo.rules.yaml", cwd=tmp_path)
    assert checked.returncode != 0
    assert "parse error" in checked.stdout + checked.stderr


def test_promtool_test_catches_an_alert_that_no_longer_fires(tmp_path: Path) -> None:
    rule = prometheus_rule()
    for alert in alerts(rule):
        if alert["alert"] == "AforoProcessDown":
            alert["for"] = "1h"
    lay_out(tmp_path, rule, (MONITORING / "tests" / "rules-test.yaml").read_text())
    tested = promtool("test", "rules", "rules-test.yaml", cwd=tmp_path)
    assert tested.returncode != 0
    assert "AforoProcessDown" in tested.stdout + tested.stderr
