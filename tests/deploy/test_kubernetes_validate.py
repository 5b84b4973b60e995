"""Built-in resources validate with `kubernetes-validate --strict` (its wheel ships the schemas) at
the oldest and the newest Kubernetes the docs support; custom resources are test_crd_schemas.py's."""

from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate
import pytest

from tests.deploy.manifests import BUILTIN_GROUPS, by_kind

KUBERNETES_VERSIONS = ("1.32.0", "1.35.0")


def strict_errors(documents: list[dict[str, Any]], version: str) -> list[str]:
    errors = []
    for doc in documents:
        if doc["apiVersion"] not in BUILTIN_GROUPS:
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            errors.append(f"{doc['kind']}/{doc['metadata']['name']} @ {version}: {error.message}")
    return errors


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_builtin_resource_is_valid_and_has_no_unknown_field(
    everything_rendered: list[dict[str, Any]], version: str
) -> None:
    assert {doc["apiVersion"] for doc in everything_rendered} - {
        "kafka.strimzi.io/v1",
        "monitoring.coreos.com/v1",
        "keda.sh/v1alpha1",
    } <= set(BUILTIN_GROUPS)
    assert strict_errors(everything_rendered, version) == []


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_a_typo_d_field_is_refused(rendered_overlays: dict[str, list[dict[str, Any]]], version: str) -> None:
    deployment = copy.deepcopy(by_kind(rendered_overlays["prod"], "Deployment")[0])
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbes"] = container.pop("readinessProbe")
    errors = strict_errors([deployment], version)
    assert len(errors) == 1
    assert "readinessProbes" in errors[0]
