from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.deploy.manifests import COMPONENTS, K8S, OVERLAYS, component_over_base, kustomize


@pytest.fixture(scope="session")
def rendered_overlays() -> dict[str, list[dict[str, Any]]]:
    return {overlay: kustomize(K8S / "overlays" / overlay) for overlay in OVERLAYS}


@pytest.fixture(scope="session")
def rendered_components(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    workdir: Path = tmp_path_factory.mktemp("components")
    return {name: kustomize(component_over_base(K8S, name, workdir)) for name in COMPONENTS}


@pytest.fixture(scope="session")
def everything_rendered(
    rendered_overlays: dict[str, list[dict[str, Any]]], rendered_components: dict[str, list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    return [doc for docs in [*rendered_overlays.values(), *rendered_components.values()] for doc in docs]
