"""Every process handles bad configuration alike (issue #13): exit 2, one log line naming the setting,
no traceback, never the value."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SERVICES = ["bridge", "trigger", "dispatcher", "api", "sse_gateway"]


@pytest.mark.parametrize("service", SERVICES)
def test_an_unparseable_setting_exits_2_naming_it(service: str) -> None:
    env = {**os.environ, f"AFORO_{service.upper()}_HTTP_PORT": "not-a-port-s3cr3t"}
    done = subprocess.run(
        [sys.executable, "-m", f"aforo.{service}"], env=env, capture_output=True, text=True, timeout=60
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "http_port" in output
    assert "Traceback" not in output
    assert "s3cr3t" not in output


@pytest.mark.parametrize("service", ["dispatcher", "api", "sse_gateway"])
def test_a_missing_encryption_key_exits_2_naming_the_setting(service: str) -> None:
    env = {
        **os.environ,
        "AFORO_SECRETS_ENCRYPTION_KEYS": "",
        "AFORO_API_AUTH_MODE": "hs256",
        "AFORO_API_JWT_HS256_SECRET": "x" * 40,
        "AFORO_SSE_GATEWAY_SESSION_SECRET": "y" * 40,
    }
    done = subprocess.run(
        [sys.executable, "-m", f"aforo.{service}"], env=env, capture_output=True, text=True, timeout=60
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "AFORO_SECRETS_ENCRYPTION_KEYS" in output
    assert "Traceback" not in output
