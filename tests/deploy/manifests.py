"""Rendering and inspecting deploy/k8s for the offline deployment checks (no cluster involved)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
COMPONENTS = ("strimzi", "monitoring", "keda", "hpa", "networkpolicy", "dev-mongo")
KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
BUILTIN_GROUPS = ("v1", "apps/v1", "policy/v1", "autoscaling/v2", "networking.k8s.io/v1")


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize` of one directory, as documents; raises with kustomize's message on failure."""
    done = subprocess.run(
        [KUBECTL, "kustomize", str(directory)], capture_output=True, text=True, timeout=120, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {directory}: {done.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def component_over_base(k8s: Path, component: str, workdir: Path) -> Path:
    """A throwaway kustomization that applies one component to the base, as an overlay would."""
    overlay = workdir / f"with-{component}"
    overlay.mkdir(parents=True, exist_ok=True)
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                # kustomize takes only relative paths to other kustomizations.
                "resources": [os.path.relpath(k8s / "base", overlay)],
                "components": [os.path.relpath(k8s / "components" / component, overlay)],
            }
        )
    )
    return overlay


def copy_k8s(workdir: Path) -> Path:
    """A copy of deploy/k8s to break on purpose."""
    target = workdir / "k8s"
    shutil.copytree(K8S, target)
    return target


def pod_templates(documents: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in documents:
        if doc.get("kind") in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
            yield f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]


def by_kind(documents: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in documents if doc.get("kind") == kind]
