"""Grafana dashboards: classic JSON with a stable uid, `id: null`, a pinned schemaVersion, a templated
datasource on every panel and query, `$__rate_interval` in every rate; shipped as a labelled ConfigMap."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.deploy.manifests import K8S, by_kind

DASHBOARDS = K8S / "components" / "monitoring" / "dashboards"
SCHEMA_VERSION = 39
RANGE = re.compile(r"\[([^\]]+)\]")


def dashboard_problems(board: dict[str, Any]) -> list[str]:
    found = []
    uid = board.get("uid", "")
    if not re.fullmatch(r"aforo-[a-z-]+", uid):
        found.append(f"uid {uid!r} is not a stable aforo-* uid")
    if board.get("id", 0) is not None:
        found.append(f"{uid}: id is not null")
    if board.get("schemaVersion") != SCHEMA_VERSION:
        found.append(f"{uid}: schemaVersion is not pinned to {SCHEMA_VERSION}")
    variables = {v["name"]: v for v in board["templating"]["list"]}
    if variables.get("datasource", {}).get("type") != "datasource":
        found.append(f"{uid}: no templated datasource")
    for panel in board["panels"]:
        title = f"{uid}/{panel.get('title')}"
        if panel.get("datasource", {}).get("uid") != "${datasource}":
            found.append(f"{title}: panel datasource is not ${{datasource}}")
        for target in panel.get("targets", []):
            if target.get("datasource", {}).get("uid") != "${datasource}":
                found.append(f"{title}: query datasource is not ${{datasource}}")
            for window in RANGE.findall(target["expr"]):
                if window != "$__rate_interval":
                    found.append(f"{title}: range [{window}] instead of [$__rate_interval]")
    return found


def test_every_dashboard_is_well_formed() -> None:
    boards = {path.name: json.loads(path.read_text()) for path in DASHBOARDS.glob("*.json")}
    assert set(boards) == {
        "overview.json",
        "bridge.json",
        "trigger.json",
        "dispatcher.json",
        "api.json",
        "sse-gateway.json",
    }
    assert [p for board in boards.values() for p in dashboard_problems(board)] == []
    uids = [board["uid"] for board in boards.values()]
    assert len(set(uids)) == len(uids)


def test_dashboards_ship_as_a_configmap_for_the_grafana_sidecar(
    rendered_components: dict[str, list[dict[str, Any]]],
) -> None:
    maps = [
        m
        for m in by_kind(rendered_components["monitoring"], "ConfigMap")
        if m["metadata"]["name"] == "aforo-dashboards"
    ]
    assert len(maps) == 1
    assert maps[0]["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert {json.loads(text)["uid"] for text in maps[0]["data"].values()} == {
        json.loads(path.read_text())["uid"] for path in DASHBOARDS.glob("*.json")
    }


def test_a_broken_dashboard_is_caught() -> None:
    board = json.loads((DASHBOARDS / "overview.json").read_text())
    board["id"] = 7
    board["panels"][0]["targets"][0]["expr"] = "sum(rate(aforo_bridge_records_in_total[5m]))"
    board["panels"][1]["datasource"] = {"type": "prometheus", "uid": "prometheus"}
    problems = dashboard_problems(board)
    assert len(problems) == 3, problems
