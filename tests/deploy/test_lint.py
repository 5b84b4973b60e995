"""yamllint on deploy/k8s and hadolint on the Containerfile pass, and each catches a broken copy."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.deploy.manifests import K8S, ROOT, copy_k8s

BIN = Path(sys.executable).parent
CONTAINERFILE = ROOT / "deploy" / "image" / "Containerfile"


def yamllint(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "yamllint"), "-f", "parsable", "-c", str(directory / ".yamllint.yaml"), str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def hadolint(containerfile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "hadolint"), "--no-color", str(containerfile)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_yamllint_passes() -> None:
    done = yamllint(K8S)
    assert done.returncode == 0, done.stdout + done.stderr


def test_yamllint_catches_a_duplicate_key(tmp_path: Path) -> None:
    k8s = copy_k8s(tmp_path)
    settings = k8s / "base" / "settings.yaml"
    settings.write_text(settings.read_text() + "  AFORO_LOG_LEVEL: DEBUG\n")
    done = yamllint(k8s)
    assert done.returncode != 0
    assert "settings.yaml" in done.stdout
    assert "key-duplicates" in done.stdout


def test_hadolint_passes() -> None:
    done = hadolint(CONTAINERFILE)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_catches_an_unpinned_install_and_a_root_image(tmp_path: Path) -> None:
    broken = tmp_path / "Containerfile"
    shutil.copy(CONTAINERFILE, broken)
    text = broken.read_text().replace("uv==0.13.8", "uv").replace("USER 10001:10001", "USER root")
    broken.write_text(text)
    done = hadolint(broken)
    assert done.returncode != 0
    assert "DL3013" in done.stdout  # pip install without a pinned version
    assert "DL3002" in done.stdout  # the last USER is root
