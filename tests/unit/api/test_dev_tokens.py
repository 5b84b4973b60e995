"""The dev-token CLI: refused (exit 2, stderr) unless the API runs with the HS256 dev setting, and its
tokens verify with exactly that setting."""

import subprocess
import sys

import pytest

from aforo.api.auth import AuthConfig, JwtVerifier, Principal
from aforo.api.dev_tokens import main

SECRET = "local-dev-secret-0123456789abcdef"
AUTH_ENV = ("AUTH_MODE", "JWT_HS256_SECRET", "JWKS_URL", "JWT_ISSUER", "JWT_AUDIENCE")


@pytest.fixture
def auth_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in AUTH_ENV:
        monkeypatch.delenv(f"AFORO_API_{name}", raising=False)
        monkeypatch.delenv(f"AFORO_{name}", raising=False)
    return monkeypatch


@pytest.fixture
def hs256_env(auth_env: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    auth_env.setenv("AFORO_API_AUTH_MODE", "hs256")
    auth_env.setenv("AFORO_API_JWT_HS256_SECRET", SECRET)
    return auth_env


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({}, "AFORO_API_JWKS_URL"),
        (
            {"AFORO_API_AUTH_MODE": "jwks", "AFORO_API_JWKS_URL": "http://keycloak/certs"},
            "configured for jwks",
        ),
        (
            {
                "AFORO_API_AUTH_MODE": "jwks",
                "AFORO_API_JWKS_URL": "http://keycloak/certs",
                "AFORO_API_JWT_HS256_SECRET": SECRET,
            },
            "configured for jwks",
        ),
        ({"AFORO_API_AUTH_MODE": "hs256"}, "is required when auth_mode is hs256"),
        ({"AFORO_API_AUTH_MODE": "hs256", "AFORO_API_JWT_HS256_SECRET": "too-short"}, "at least 32 bytes"),
    ],
    ids=["nothing-set", "jwks", "jwks-even-with-a-secret", "hs256-without-secret", "short-secret"],
)
def test_refused_without_the_hs256_dev_setting(
    auth_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], env: dict[str, str], reason: str
) -> None:
    for name, value in env.items():
        auth_env.setenv(name, value)

    code = main(["token", "--tenant", "t1", "--role", "ADMIN"])

    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert err.startswith("dev_tokens: refused: dev tokens need the HS256 dev setting")
    assert reason in err
    assert "too-short" not in err


async def test_minted_token_verifies_with_the_dev_setting(
    hs256_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["token", "--tenant", "t1", "--role", "CUSTOMER", "--customer", "c1", "--ttl", "60"])

    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    assert out.count("\n") == 1
    principal = await JwtVerifier(AuthConfig.from_env()).verify(out.strip())
    assert principal == Principal(
        tenant_id="t1", subject="dev-user", roles=frozenset({"CUSTOMER"}), customer_id="c1"
    )


async def test_minted_token_carries_the_configured_issuer_and_audience(
    hs256_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    hs256_env.setenv("AFORO_API_JWT_ISSUER", "http://localhost/realms/dev")
    hs256_env.setenv("AFORO_API_JWT_AUDIENCE", "aforo-api")

    code = main(["token", "--tenant", "t1", "--role", "OWNER", "--role", "BILLING_ADMIN", "--subject", "me"])

    token = capsys.readouterr().out.strip()
    principal = await JwtVerifier(AuthConfig.from_env()).verify(token)
    assert code == 0
    assert principal.subject == "me"
    assert principal.roles == frozenset({"OWNER", "BILLING_ADMIN"})


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["token", "--tenant", "t1", "--role", "CUSTOMER"], "--role CUSTOMER needs --customer"),
        (["token", "--tenant", "t1", "--role", "ADMIN", "--ttl", "0"], "--ttl must be a positive"),
        (["token", "--tenant", "", "--role", "ADMIN"], "--tenant must not be empty"),
        (["token", "--tenant", "t1", "--role", "admin"], "invalid choice"),
        (["token", "--role", "ADMIN"], "--tenant"),
        ([], "command"),
    ],
)
def test_unusable_requests_exit_2(
    hs256_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code = main(argv)

    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert message in err


def test_runs_as_a_module(hs256_env: pytest.MonkeyPatch) -> None:
    refused = subprocess.run(
        [sys.executable, "-m", "aforo.api.dev_tokens", "token", "--tenant", "t1", "--role", "ADMIN"],
        capture_output=True,
        text=True,
        env={"PATH": "", "AFORO_API_AUTH_MODE": "jwks", "AFORO_API_JWKS_URL": "http://keycloak/certs"},
        check=False,
    )
    minted = subprocess.run(
        [sys.executable, "-m", "aforo.api.dev_tokens", "token", "--tenant", "t1", "--role", "ADMIN"],
        capture_output=True,
        text=True,
        env={"PATH": "", "AFORO_API_AUTH_MODE": "hs256", "AFORO_API_JWT_HS256_SECRET": SECRET},
        check=False,
    )

    assert (refused.returncode, refused.stdout) == (2, "")
    assert "refused" in refused.stderr
    assert minted.returncode == 0, minted.stderr
    assert minted.stdout.count(".") == 2
    assert minted.stderr == ""
