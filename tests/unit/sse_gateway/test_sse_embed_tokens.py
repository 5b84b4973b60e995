"""Bridge-token verification and session JWTs: every rule as a row."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest

from aforo.shared.embed import SigningKeyStatus
from aforo.sse_gateway.embed_tokens import (
    EmbedAuthError,
    SigningKey,
    bridge_token_header,
    issue_session_token,
    session_secrets,
    verify_bridge_token,
    verify_session_token,
)
from aforo.sse_gateway.integrator_tokens import main as integrator_cli
from aforo.sse_gateway.integrator_tokens import mint_bridge_token

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
T = NOW.timestamp()
SECRET = "bridge-secret-0123456789abcdef-0123456789"
OTHER_SECRET = "another-secret-0123456789abcdef-012345678"
SESSION_SECRET = "session-secret-0123456789abcdef-0123456789"
KID = "bsk_1"
LEEWAY = 30


def key(status: SigningKeyStatus = SigningKeyStatus.ACTIVE, **overrides: Any) -> SigningKey:
    values: dict[str, Any] = {
        "tenant_id": "t1",
        "kid": KID,
        "secret": SECRET,
        "status": status,
        "retires_at": None,
    }
    values.update(overrides)
    return SigningKey(**values)


def token(
    claims: dict[str, Any] | None = None,
    *,
    secret: str = SECRET,
    headers: dict[str, Any] | None = None,
    algorithm: str = "HS256",
) -> str:
    body: dict[str, Any] = {
        "tenant_id": "t1",
        "customer_id": "c1",
        "jti": "jti-1",
        "iat": int(T),
        "exp": int(T) + 120,
    }
    body.update(claims or {})
    body = {name: value for name, value in body.items() if value is not None}
    return jwt.encode(body, secret, algorithm=algorithm, headers={"kid": KID, **(headers or {})})


def unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part(header)}.{part(claims)}."


def test_a_bridge_token_from_the_reference_signer_verifies() -> None:
    minted = mint_bridge_token(kid=KID, secret=SECRET, tenant_id="t1", customer_id="c1", issued_at=T)

    claims = verify_bridge_token(minted, key(), now=NOW, leeway_seconds=LEEWAY)

    assert (claims.tenant_id, claims.customer_id, claims.kid) == ("t1", "c1", KID)
    # Each minted token has its own jti (the gateway exchanges a jti once), remembered until the
    # token could no longer verify: exp plus the leeway.
    again = mint_bridge_token(kid=KID, secret=SECRET, tenant_id="t1", customer_id="c1", issued_at=T)
    assert claims.jti != verify_bridge_token(again, key(), now=NOW, leeway_seconds=LEEWAY).jti
    assert len(claims.jti) >= 16
    assert claims.expires_at == datetime.fromtimestamp(int(T) + 120 + LEEWAY, tz=UTC)
    assert bridge_token_header(minted).kid == KID
    assert bridge_token_header(minted).claimed_tenant_id == "t1"


@pytest.mark.parametrize(
    ("signing_key", "verifies"),
    [
        (key(SigningKeyStatus.NEXT), True),
        (key(SigningKeyStatus.ACTIVE), True),
        (key(SigningKeyStatus.ACTIVE, retires_at=NOW + timedelta(hours=1)), True),  # in its overlap
        (key(SigningKeyStatus.ACTIVE, retires_at=NOW - timedelta(seconds=1)), False),  # RETIRED
        (key(SigningKeyStatus.RETIRED), False),
        (key(SigningKeyStatus.REVOKED), False),
    ],
)
def test_next_and_active_keys_verify_retired_and_revoked_do_not(
    signing_key: SigningKey, verifies: bool
) -> None:
    if verifies:
        assert verify_bridge_token(token(), signing_key, now=NOW, leeway_seconds=LEEWAY).customer_id == "c1"
    else:
        with pytest.raises(EmbedAuthError) as refused:
            verify_bridge_token(token(), signing_key, now=NOW, leeway_seconds=LEEWAY)
        assert (refused.value.status, refused.value.code) == (401, "signing_key_not_usable")


def _tok(**claims: Any) -> Callable[[], str]:
    return lambda: token(claims)


BAD_BRIDGE_TOKENS: list[tuple[str, Callable[[], str], SigningKey | None, str]] = [
    ("garbage", lambda: "not.a.jwt", key(), "malformed_token"),
    ("empty", lambda: "", key(), "malformed_token"),
    ("oversized", lambda: "a" * 5000, key(), "malformed_token"),
    ("alg none", lambda: unsigned({"alg": "none", "kid": KID}, {"tenant_id": "t1"}), key(), "invalid_token"),
    ("HS512", lambda: token(secret=SECRET * 2, algorithm="HS512"), key(), "invalid_token"),
    ("no kid", lambda: jwt.encode({"tenant_id": "t1"}, SECRET, algorithm="HS256"), key(), "invalid_token"),
    ("unknown kid", lambda: token(), None, "invalid_token"),
    ("another kid", lambda: token(headers={"kid": "bsk_other"}), key(), "invalid_token"),
    (
        "revoked key, wrong secret",
        lambda: token(secret=OTHER_SECRET),
        key(SigningKeyStatus.REVOKED),
        "invalid_token",
    ),
    ("no jti", _tok(jti=None), key(), "invalid_token"),
    ("empty jti", _tok(jti=""), key(), "invalid_token"),
    ("numeric jti", _tok(jti=7), key(), "invalid_token"),
    ("long jti", _tok(jti="j" * 129), key(), "invalid_token"),
    ("wrong secret", lambda: token(secret=OTHER_SECRET), key(), "invalid_token"),
    ("another tenant's key", lambda: token(), key(tenant_id="t2"), "invalid_token"),
    ("no tenant_id", _tok(tenant_id=None), key(), "invalid_token"),
    ("no customer_id", _tok(customer_id=None), key(), "invalid_token"),
    ("empty customer_id", _tok(customer_id=""), key(), "invalid_token"),
    ("numeric customer_id", _tok(customer_id=7), key(), "invalid_token"),
    ("long customer_id", _tok(customer_id="c" * 129), key(), "invalid_token"),
    ("no exp", _tok(exp=None), key(), "invalid_token"),
    ("no iat", _tok(iat=None), key(), "invalid_token"),
    ("string exp", _tok(exp="soon"), key(), "invalid_token"),
    ("expired", _tok(iat=int(T) - 200, exp=int(T) - 31), key(), "token_expired"),
    ("issued in the future", _tok(iat=int(T) + 60, exp=int(T) + 120), key(), "token_not_yet_valid"),
    ("exp 10 minutes ahead", _tok(exp=int(T) + 600), key(), "token_lifetime_too_long"),
    ("lived an hour", _tok(iat=int(T) - 3600, exp=int(T) + 60), key(), "token_lifetime_too_long"),
]


@pytest.mark.parametrize(
    ("token_factory", "signing_key", "code"),
    [row[1:] for row in BAD_BRIDGE_TOKENS],
    ids=[row[0] for row in BAD_BRIDGE_TOKENS],
)
def test_bad_bridge_tokens_are_refused_with_a_reason(
    token_factory: Callable[[], str], signing_key: SigningKey | None, code: str
) -> None:
    with pytest.raises(EmbedAuthError) as refused:
        verify_bridge_token(token_factory(), signing_key, now=NOW, leeway_seconds=LEEWAY)

    assert refused.value.status == 401
    assert refused.value.code == code


def test_without_the_secret_an_unknown_kid_and_a_bad_signature_look_alike() -> None:
    """The key's existence and status are told only to a caller that signed with its secret."""

    def refusal(minted: str, signing_key: SigningKey | None) -> tuple[int, str, str, str | None]:
        with pytest.raises(EmbedAuthError) as refused:
            verify_bridge_token(minted, signing_key, now=NOW, leeway_seconds=LEEWAY)
        return (refused.value.status, refused.value.code, refused.value.message, refused.value.field)

    answers = {
        refusal(token(), None),  # no such kid
        refusal(token(secret=OTHER_SECRET), key()),  # an ACTIVE key, a wrong signature
        refusal(token(secret=OTHER_SECRET), key(SigningKeyStatus.REVOKED)),
        refusal(
            token(secret=OTHER_SECRET), key(SigningKeyStatus.ACTIVE, retires_at=NOW - timedelta(hours=1))
        ),
    }

    assert answers == {(401, "invalid_token", "the token signature does not verify", None)}
    # With the secret, a retired or revoked key says what it is, so the integrator can fix it.
    assert refusal(token(), key(SigningKeyStatus.REVOKED))[1] == "signing_key_not_usable"


def test_a_missing_jti_is_named() -> None:
    with pytest.raises(EmbedAuthError) as refused:
        verify_bridge_token(token({"jti": None}), key(), now=NOW, leeway_seconds=LEEWAY)

    assert (refused.value.code, refused.value.field) == ("invalid_token", "jti")
    assert "jti" in refused.value.message


@pytest.mark.parametrize(
    ("iat_offset", "exp_offset"),
    [(0, 300), (-250, 50), (0, 330), (20, 120), (-300, -29)],  # edges, inside the 30 s leeway
)
def test_the_five_minute_rule_allows_the_leeway(iat_offset: int, exp_offset: int) -> None:
    minted = token({"iat": int(T) + iat_offset, "exp": int(T) + exp_offset})

    assert verify_bridge_token(minted, key(), now=NOW, leeway_seconds=LEEWAY).tenant_id == "t1"


def session(**overrides: Any) -> tuple[str, datetime]:
    values: dict[str, Any] = {
        "tenant_id": "t1",
        "customer_id": "c1",
        "session_id": "es_1",
        "embed_key_id": "ek_1",
        "secret": SESSION_SECRET,
        "now": NOW,
        "ttl": timedelta(minutes=15),
    }
    values.update(overrides)
    return issue_session_token(**values)


def test_a_session_token_round_trips_its_scope() -> None:
    issued, expires_at = session()

    claims = verify_session_token(issued, [SESSION_SECRET], now=NOW, leeway_seconds=LEEWAY)

    assert (claims.tenant_id, claims.customer_id, claims.session_id, claims.embed_key_id) == (
        "t1",
        "c1",
        "es_1",
        "ek_1",
    )
    assert claims.expires_at == expires_at == NOW + timedelta(minutes=15)
    assert jwt.get_unverified_header(issued)["alg"] == "HS256"


def test_session_secrets_rotate_newest_first() -> None:
    issued_with_old, _ = session()

    claims = verify_session_token(
        issued_with_old, ["a-newer-secret-0123456789abcdef-xyz", SESSION_SECRET], now=NOW, leeway_seconds=0
    )

    assert claims.customer_id == "c1"


def _session_claims(**changes: Any) -> str:
    claims: dict[str, Any] = jwt.decode(session()[0], options={"verify_signature": False})
    claims.update(changes)
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, SESSION_SECRET, algorithm="HS256")


BAD_SESSION_TOKENS: list[tuple[str, Callable[[], str], str]] = [
    ("expired", lambda: session(now=NOW - timedelta(hours=1))[0], "token_expired"),
    ("signed by another gateway", lambda: session(secret=OTHER_SECRET)[0], "invalid_token"),
    ("a bridge token", lambda: token(secret=SESSION_SECRET), "invalid_token"),
    ("another audience", lambda: _session_claims(aud="someone-else"), "invalid_token"),
    ("another issuer", lambda: _session_claims(iss="someone-else"), "invalid_token"),
    ("no customer", lambda: _session_claims(customer_id=None), "invalid_token"),
    ("no session id", lambda: _session_claims(sid=None), "invalid_token"),
    ("tampered customer", lambda: _tamper(session()[0], customer_id="c2"), "invalid_token"),
    ("alg none", lambda: unsigned({"alg": "none"}, {"tenant_id": "t1"}), "invalid_token"),
]


def _tamper(issued: str, **changes: Any) -> str:
    header, claims_part, signature = issued.split(".")
    claims = json.loads(base64.urlsafe_b64decode(claims_part + "=" * (-len(claims_part) % 4)))
    claims.update(changes)
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


@pytest.mark.parametrize(
    ("token_factory", "code"),
    [row[1:] for row in BAD_SESSION_TOKENS],
    ids=[row[0] for row in BAD_SESSION_TOKENS],
)
def test_bad_session_tokens_are_refused(token_factory: Callable[[], str], code: str) -> None:
    with pytest.raises(EmbedAuthError) as refused:
        verify_session_token(token_factory(), [SESSION_SECRET], now=NOW, leeway_seconds=LEEWAY)

    assert (refused.value.status, refused.value.code) == (401, code)


@pytest.mark.parametrize(
    ("setting", "secrets", "error"),
    [
        (SESSION_SECRET, [SESSION_SECRET], None),
        (f" {SESSION_SECRET} , {OTHER_SECRET} ", [SESSION_SECRET, OTHER_SECRET], None),
        (None, None, "is required"),
        (" , ", None, "is required"),
        ("short", None, "at least 32 bytes"),
        (f"{SESSION_SECRET},short", None, "at least 32 bytes"),
    ],
)
def test_the_session_secret_setting(
    setting: str | None, secrets: list[str] | None, error: str | None
) -> None:
    if error is None:
        assert session_secrets(setting) == secrets
    else:
        with pytest.raises(ValueError, match=error) as refused:
            session_secrets(setting)
        assert "AFORO_SSE_GATEWAY_SESSION_SECRET" in str(refused.value)
        if setting and setting.strip(" ,"):
            assert "short" not in str(refused.value)


def test_the_dev_cli_prints_a_verifiable_token(capsys: pytest.CaptureFixture[str]) -> None:
    assert integrator_cli(["--kid", KID, "--secret", SECRET, "--tenant", "t1", "--customer", "c9"]) == 0

    printed = capsys.readouterr().out.strip()
    claims = verify_bridge_token(printed, key(), now=datetime.now(UTC), leeway_seconds=LEEWAY)
    assert claims.customer_id == "c9"
