"""Every pod template meets the restricted Pod Security profile, and every container has probes,
limits and the hardened security context; the SSE gateway rolls without dropping streams."""

from __future__ import annotations

import copy
from typing import Any

from tests.deploy.manifests import by_kind, pod_templates

SHUTDOWN_GRACE_SECONDS = 25
SECRET_ENV = ("SECRET", "KEYS", "MONGO_URI", "PASSWORD", "TOKEN")


def pod_violations(name: str, template: dict[str, Any], settings: dict[str, str]) -> list[str]:
    """What in one pod template breaks the rules; empty when it keeps them all."""
    spec = template["spec"]
    found: list[str] = []
    pod_context = spec.get("securityContext", {})
    if pod_context.get("runAsNonRoot") is not True:
        found.append(f"{name}: pod runAsNonRoot is not true")
    if not isinstance(pod_context.get("runAsUser"), int) or pod_context["runAsUser"] == 0:
        found.append(f"{name}: pod has no fixed non-root runAsUser")
    if pod_context.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        found.append(f"{name}: pod seccompProfile is not RuntimeDefault")
    if spec.get("automountServiceAccountToken") is not False:
        found.append(f"{name}: the service account token is mounted")
    for forbidden in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(forbidden):
            found.append(f"{name}: {forbidden}")
    for volume in spec.get("volumes", []):
        if "hostPath" in volume:
            found.append(f"{name}: hostPath volume {volume['name']}")
    grace = spec.get("terminationGracePeriodSeconds", 30)
    for container in [*spec.get("initContainers", []), *spec["containers"]]:
        where = f"{name}/{container['name']}"
        context = container.get("securityContext", {})
        if context.get("allowPrivilegeEscalation") is not False:
            found.append(f"{where}: allowPrivilegeEscalation is not false")
        if context.get("readOnlyRootFilesystem") is not True:
            found.append(f"{where}: readOnlyRootFilesystem is not true")
        if context.get("capabilities", {}).get("drop") != ["ALL"]:
            found.append(f"{where}: capabilities.drop is not [ALL]")
        if context.get("capabilities", {}).get("add"):
            found.append(f"{where}: adds capabilities")
        if context.get("privileged"):
            found.append(f"{where}: privileged")
        if context.get("runAsUser") == 0:
            found.append(f"{where}: runs as root")
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            if probe not in container:
                found.append(f"{where}: no {probe}")
        limits = container.get("resources", {}).get("limits", {})
        requests = container.get("resources", {}).get("requests", {})
        if not {"cpu", "memory"} <= limits.keys() or not {"cpu", "memory"} <= requests.keys():
            found.append(f"{where}: cpu and memory requests and limits are not all set")
        for variable in container.get("env", []):
            if any(word in variable["name"] for word in SECRET_ENV) and "value" in variable:
                found.append(f"{where}: {variable['name']} is inline, not a secretKeyRef")
        pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        if grace <= SHUTDOWN_GRACE_SECONDS + pre_stop:
            found.append(f"{where}: terminationGracePeriodSeconds {grace} <= shutdown grace + preStop")
    if any(variable.endswith("SECRET") for variable in settings):
        found.append("aforo-settings holds a secret")
    return found


def _settings(documents: list[dict[str, Any]]) -> dict[str, str]:
    maps = [doc for doc in by_kind(documents, "ConfigMap") if doc["metadata"]["name"] == "aforo-settings"]
    return maps[0]["data"] if maps else {}


def test_every_pod_is_restricted_probed_and_limited(everything_rendered: list[dict[str, Any]]) -> None:
    settings = _settings(everything_rendered)
    assert float(settings["AFORO_SHUTDOWN_GRACE_SECONDS"]) == SHUTDOWN_GRACE_SECONDS
    templates = list(pod_templates(everything_rendered))
    assert len({name for name, _ in templates}) == 6  # five processes and the dev MongoDB
    violations = [v for name, template in templates for v in pod_violations(name, template, settings)]
    assert violations == []


def test_the_processes_run_as_the_image_s_uid_with_only_tmp_writable(
    rendered_overlays: dict[str, list[dict[str, Any]]],
) -> None:
    for name, template in pod_templates(rendered_overlays["prod"]):
        spec = template["spec"]
        assert spec["securityContext"]["runAsUser"] == 10001, name
        assert spec["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}], name
        assert spec["containers"][0]["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}], name
        probes = spec["containers"][0]
        assert probes["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        assert probes["readinessProbe"]["httpGet"]["path"] == "/readyz", name
    trigger = next(t for n, t in pod_templates(rendered_overlays["prod"]) if n == "Deployment/aforo-trigger")
    env = {v["name"]: v.get("value") for v in trigger["spec"]["containers"][0]["env"]}
    assert env["AFORO_TRIGGER_DATA_DIR"].startswith("/tmp/")


def test_the_sse_gateway_rolls_without_dropping_streams(
    rendered_overlays: dict[str, list[dict[str, Any]]],
) -> None:
    for docs in rendered_overlays.values():
        gateway = next(d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == "aforo-sse-gateway")
        assert gateway["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
        assert gateway["spec"]["minReadySeconds"] > 0
        container = gateway["spec"]["template"]["spec"]["containers"][0]
        assert container["lifecycle"]["preStop"]["sleep"]["seconds"] > 0
        budgets = [
            d for d in by_kind(docs, "PodDisruptionBudget") if d["metadata"]["name"] == "aforo-sse-gateway"
        ]
        assert budgets


def test_secrets_are_only_referenced(rendered_overlays: dict[str, list[dict[str, Any]]]) -> None:
    api = next(
        d for d in by_kind(rendered_overlays["prod"], "Deployment") if d["metadata"]["name"] == "aforo-api"
    )
    env = {v["name"]: v for v in api["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["AFORO_MONGO_URI"]["valueFrom"]["secretKeyRef"] == {"name": "aforo-mongo", "key": "uri"}
    assert (
        env["AFORO_SECRETS_ENCRYPTION_KEYS"]["valueFrom"]["secretKeyRef"]["name"]
        == "aforo-secrets-encryption"
    )


def test_a_missing_probe_a_writable_root_or_an_inline_secret_is_caught(
    rendered_overlays: dict[str, list[dict[str, Any]]],
) -> None:
    settings = _settings(rendered_overlays["prod"])
    name, template = next(iter(pod_templates(rendered_overlays["prod"])))
    assert pod_violations(name, template, settings) == []
    broken = copy.deepcopy(template)
    container = broken["spec"]["containers"][0]
    del container["livenessProbe"]
    container["securityContext"]["readOnlyRootFilesystem"] = False
    container["env"].append({"name": "AFORO_SECRETS_ENCRYPTION_KEYS", "value": "not-here"})
    del container["resources"]["limits"]
    broken["spec"]["terminationGracePeriodSeconds"] = 20
    violations = pod_violations(name, broken, settings)
    assert len(violations) == 5, violations
    for expected in (
        "no livenessProbe",
        "readOnlyRootFilesystem",
        "inline",
        "limits",
        "terminationGracePeriod",
    ):
        assert any(expected in v for v in violations), expected
