"""Every overlay and every component renders with `kubectl kustomize`; a broken kustomization does not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.deploy.manifests import by_kind, copy_k8s, kustomize


def test_overlays_render_the_five_processes(rendered_overlays: dict[str, list[dict[str, Any]]]) -> None:
    for overlay, docs in rendered_overlays.items():
        names = sorted(doc["metadata"]["name"] for doc in by_kind(docs, "Deployment"))
        assert names == [
            "aforo-api",
            "aforo-bridge",
            "aforo-dispatcher",
            "aforo-sse-gateway",
            "aforo-trigger",
        ], overlay
        assert {doc["metadata"].get("namespace") for doc in docs} == {
            "aforo-dev" if overlay == "dev" else "aforo"
        }


def test_each_component_renders_over_the_base(rendered_components: dict[str, list[dict[str, Any]]]) -> None:
    expected = {
        "strimzi": "KafkaTopic",
        "monitoring": "PrometheusRule",
        "keda": "ScaledObject",
        "hpa": "HorizontalPodAutoscaler",
        "networkpolicy": "NetworkPolicy",
        "dev-mongo": "StatefulSet",
    }
    for component, kind in expected.items():
        assert by_kind(rendered_components[component], kind), component


def test_no_secret_is_rendered(everything_rendered: list[dict[str, Any]]) -> None:
    """Secrets are created by the operator of the cluster and only referenced here."""
    assert not by_kind(everything_rendered, "Secret")


def test_a_typo_in_a_kustomization_fails_to_render(tmp_path: Path) -> None:
    k8s = copy_k8s(tmp_path)
    kustomization = k8s / "overlays" / "prod" / "kustomization.yaml"
    kustomization.write_text(
        kustomization.read_text().replace("../../components/keda", "../../components/kedda")
    )
    with pytest.raises(RuntimeError, match="kedda"):
        kustomize(k8s / "overlays" / "prod")
