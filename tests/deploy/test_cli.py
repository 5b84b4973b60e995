"""`aforo <process>`: the image's one entrypoint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from aforo.shared.cli import PROCESSES, describe_settings, settings_class

AFORO = Path(sys.executable).parent / "aforo"


@pytest.mark.parametrize("process", sorted(PROCESSES))
def test_each_process_imports_and_lists_its_settings(process: str) -> None:
    done = subprocess.run(
        [str(AFORO), process, "--help"], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert f"same as `python -m {PROCESSES[process]}`" in done.stdout
    prefix = "AFORO_" + process.upper().replace("-", "_") + "_HTTP_PORT"
    assert prefix in done.stdout


def test_secrets_show_no_default_and_no_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AFORO_SSE_GATEWAY_SESSION_SECRET", "do-not-print-me-0123456789abcdef0123")
    lines = "\n".join(describe_settings(settings_class("aforo.sse_gateway")))
    assert "AFORO_SSE_GATEWAY_SESSION_SECRET" in lines
    assert "do-not-print-me" not in lines


def test_an_unknown_process_is_refused() -> None:
    done = subprocess.run([str(AFORO), "scheduler"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "invalid choice: 'scheduler'" in done.stderr
