"""RS256 through a JWKS served by a real aiohttp server on 127.0.0.1: caching, rotation, rate limit,
Keycloak-shaped tokens, the alg-confusion attack, and what happens when Keycloak is down.

The JWKS clock is injected so the cache and the rate limit are tested without sleeping.
"""

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from aforo.api.auth import (
    AuthConfig,
    AuthError,
    JwksKeySet,
    JwtVerifier,
    auth_middleware,
    require_admin,
)

ISSUER = "http://127.0.0.1/realms/aforo"
AUDIENCE = "aforo-api"


@dataclass
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Keycloak:
    """A JWKS endpoint whose published keys and health the test controls."""

    keys: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    hits: int = 0
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/realms/aforo/protocol/openid-connect/certs"


@pytest.fixture(scope="module")
def rsa_keys() -> dict[str, rsa.RSAPrivateKey]:
    return {
        name: rsa.generate_private_key(public_exponent=65537, key_size=2048)
        for name in ("k1", "k2", "attacker")
    }


def public_jwk(private_key: rsa.RSAPrivateKey, kid: str, **extra: str) -> dict[str, Any]:
    jwk: dict[str, Any] = RSAAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    return {**jwk, "kid": kid, "use": "sig", "alg": "RS256", **extra}


@pytest.fixture
async def keycloak(rsa_keys: dict[str, rsa.RSAPrivateKey]) -> AsyncIterator[Keycloak]:
    state = Keycloak(keys=[public_jwk(rsa_keys["k1"], "k1")])

    async def certs(_: web.Request) -> web.Response:
        state.hits += 1
        if state.status != 200:
            return web.json_response({"error": "down"}, status=state.status)
        return web.json_response({"keys": state.keys})

    app = web.Application()
    app.router.add_get("/realms/aforo/protocol/openid-connect/certs", certs)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.port = runner.addresses[0][1]
    try:
        yield state
    finally:
        await runner.cleanup()


@dataclass
class Setup:
    verifier: JwtVerifier
    clock: FakeClock
    key_set: JwksKeySet


@pytest.fixture
async def setup(keycloak: Keycloak) -> AsyncIterator[Setup]:
    config = AuthConfig(mode="jwks", jwks_url=keycloak.url, issuer=ISSUER, audience=AUDIENCE)
    clock = FakeClock()
    key_set = JwksKeySet(keycloak.url, cache_seconds=300, min_refresh_seconds=10, clock=clock)
    verifier = JwtVerifier(config, key_set=key_set)
    try:
        yield Setup(verifier, clock, key_set)
    finally:
        await verifier.close()


def keycloak_claims(**overrides: Any) -> dict[str, Any]:
    """Shaped like a Keycloak access token with the aforo mappers (tenant_id, customer_id)."""
    now = int(time.time())
    base: dict[str, Any] = {
        "exp": now + 300,
        "iat": now,
        "jti": "onrtac:0b0c",
        "iss": ISSUER,
        "aud": ["account", AUDIENCE],
        "sub": "2f1c6e9a-5f0b-4c1e-9a51-6f3d1b1f1e11",
        "typ": "Bearer",
        "azp": "aforo-console",
        "realm_access": {"roles": ["offline_access", "uma_authorization", "ADMIN"]},
        "resource_access": {"account": {"roles": ["manage-account"]}},
        "scope": "openid profile email",
        "tenant_id": "t1",
    }
    base.update(overrides)
    return base


def rs256_token(private_key: rsa.RSAPrivateKey, kid: str | None, **overrides: Any) -> str:
    headers = {"kid": kid} if kid is not None else {}
    return jwt.encode(keycloak_claims(**overrides), private_key, algorithm="RS256", headers=headers)


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def hs256_signed_with_public_key(private_key: rsa.RSAPrivateKey, kid: str) -> str:
    """The alg-confusion attack: HS256 whose HMAC key is the server's RSA public key (PEM), by hand,
    since PyJWT itself refuses to sign HMAC with a PEM key."""
    pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    payload = b64url(json.dumps(keycloak_claims()).encode())
    signature = hmac.new(pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64url(signature)}"


async def refusal(verifier: JwtVerifier, token: str) -> AuthError:
    with pytest.raises(AuthError) as raised:
        await verifier.verify(token)
    return raised.value


async def test_keycloak_token_verifies_with_realm_roles(
    setup: Setup, keycloak: Keycloak, rsa_keys: dict[str, rsa.RSAPrivateKey]
) -> None:
    principal = await setup.verifier.verify(rs256_token(rsa_keys["k1"], "k1"))

    assert principal.tenant_id == "t1"
    assert principal.is_admin
    assert "offline_access" in principal.roles
    assert principal.customer_id is None


async def test_keys_are_cached(
    setup: Setup, keycloak: Keycloak, rsa_keys: dict[str, rsa.RSAPrivateKey]
) -> None:
    for _ in range(5):
        await setup.verifier.verify(rs256_token(rsa_keys["k1"], "k1"))

    assert keycloak.hits == 1


async def test_keys_are_fetched_again_after_the_cache_expires(
    setup: Setup, keycloak: Keycloak, rsa_keys: dict[str, rsa.RSAPrivateKey]
) -> None:
    await setup.verifier.verify(rs256_token(rsa_keys["k1"], "k1"))
    setup.clock.now += 301

    await setup.verifier.verify(rs256_token(rsa_keys["k1"], "k1"))

    assert keycloak.hits == 2


async def test_a_rotated_key_is_picked_up_with_one_refresh(
    setup: Setup, keycloak: Keycloak, rsa_keys: dict[str, rsa.RSAPrivateKey]
) -> None:
    await setup.verifier.verify(rs256_token(rsa_keys["k1"], "k1"))
    setup.clock.now += 11  # past the rate limit, well inside the cache lifetime
    keycloak.keys = [public_jwk(rsa_keys["k1"], "k1"), public_jwk(rsa_keys["k2"], "k2")]

    for _ in range(3):
        assert (await setup.verifier.verify(rs256_token(rsa_keys["k2"], "k2"))).tenant_id == "t1"
    await setup.verifier.verify(rs256_token(rsa_keys["k1"], "k1"))

    assert keycloak.hits == 2


async def test_concurrent_requests_with_a_new_key_share_one_refresh(
    setup: Setup, keycloak: Keycloak, rsa_keys: dict[str, rsa.RSAPrivateKey]
) -> None:
    await setup.verifier.verify(rs256_token(rsa_keys["k1"], "k1"))
    setup.clock.now += 11
    keycloak.keys = [public_jwk(rsa_keys["k2"], "k2")]
    token = rs256_token(rsa_keys["k2"], "k2")

    principals = await asyncio.gather(*(setup.verifier.verify(token) for _ in range(20)))

    assert {principal.subject for principal in principals} == {keycloak_claims()["sub"]}
    assert keycloak.hits == 2


async def test_a_flood_of_unknown_kids_costs_keycloak_one_request_per_interval(
    setup: Setup, keycloak: Keycloak, rsa_keys: dict[str, rsa.RSAPrivateKey]
) -> None:
    await setup.verifier.verify(rs256_token(rsa_keys["k1"], "k1"))
    setup.clock.now += 11

    for number in range(50):
        error = await refusal(setup.verifier, rs256_token(rsa_keys["attacker"], f"made-up-{number}"))
        assert (error.status, error.code, error.field) == (401, "invalid_token", "kid")
    assert keycloak.hits == 2

    setup.clock.now += 5  # still inside the interval
    await refusal(setup.verifier, rs256_token(rsa_keys["attacker"], "made-up-again"))
    assert keycloak.hits == 2

    setup.clock.now += 10
    await refusal(setup.verifier, rs256_token(rsa_keys["attacker"], "made-up-later"))
    assert keycloak.hits == 3


async def test_alg_confusion_is_refused_before_any_key_is_fetched(
    setup: Setup, keycloak: Keycloak, rsa_keys: dict[str, rsa.RSAPrivateKey]
) -> None:
    error = await refusal(setup.verifier, hs256_signed_with_public_key(rsa_keys["k1"], "k1"))

    assert (error.status, error.code, error.field) == (401, "invalid_token", "alg")
    assert keycloak.hits == 0


async def test_hs256_mode_refuses_rs256_tokens(rsa_keys: dict[str, rsa.RSAPrivateKey]) -> None:
    verifier = JwtVerifier(AuthConfig(mode="hs256", hs256_secret="local-dev-secret-0123456789abcdef"))

    error = await refusal(verifier, rs256_token(rsa_keys["k1"], "k1"))

    assert (error.status, error.code, error.field) == (401, "invalid_token", "alg")


@pytest.mark.parametrize(
    ("kid", "signer", "overrides", "code", "field"),
    [
        ("k1", "attacker", {}, "invalid_token", None),  # right kid, wrong key
        (None, "k1", {}, "invalid_token", "kid"),
        ("k1", "k1", {"exp": int(time.time()) - 3600}, "token_expired", "exp"),
        ("k1", "k1", {"iss": "http://127.0.0.1/realms/other"}, "invalid_issuer", "iss"),
        ("k1", "k1", {"aud": "account"}, "invalid_audience", "aud"),
    ],
    ids=["wrong-key", "no-kid", "expired", "wrong-issuer", "wrong-audience"],
)
async def test_rs256_refusals(
    setup: Setup,
    rsa_keys: dict[str, rsa.RSAPrivateKey],
    kid: str | None,
    signer: str,
    overrides: dict[str, Any],
    code: str,
    field: str | None,
) -> None:
    error = await refusal(setup.verifier, rs256_token(rsa_keys[signer], kid, **overrides))

    assert (error.status, error.code, error.field) == (401, code, field)


async def test_encryption_and_non_rsa_keys_in_the_set_are_not_used(
    setup: Setup, keycloak: Keycloak, rsa_keys: dict[str, rsa.RSAPrivateKey]
) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    keycloak.keys = [
        public_jwk(rsa_keys["k1"], "k1"),
        public_jwk(rsa_keys["k2"], "enc-key", use="enc", alg="RSA-OAEP"),
        {**ECAlgorithm.to_jwk(ec_key.public_key(), as_dict=True), "kid": "ec-key", "use": "sig"},
    ]

    error = await refusal(setup.verifier, rs256_token(rsa_keys["k2"], "enc-key"))

    assert (error.code, error.field) == ("invalid_token", "kid")
    assert (await setup.verifier.verify(rs256_token(rsa_keys["k1"], "k1"))).tenant_id == "t1"


async def test_keycloak_down_without_cached_keys_is_503(
    setup: Setup, keycloak: Keycloak, rsa_keys: dict[str, rsa.RSAPrivateKey]
) -> None:
    keycloak.status = 500

    error = await refusal(setup.verifier, rs256_token(rsa_keys["k1"], "k1"))

    assert (error.status, error.code) == (503, "auth_unavailable")


async def test_keycloak_down_after_a_fetch_keeps_the_cached_keys(
    setup: Setup, keycloak: Keycloak, rsa_keys: dict[str, rsa.RSAPrivateKey]
) -> None:
    await setup.verifier.verify(rs256_token(rsa_keys["k1"], "k1"))
    keycloak.status = 503
    setup.clock.now += 301  # the cache is stale, the refresh fails

    principal = await setup.verifier.verify(rs256_token(rsa_keys["k1"], "k1"))

    assert principal.tenant_id == "t1"
    assert keycloak.hits == 2


async def test_unreachable_jwks_is_503(rsa_keys: dict[str, rsa.RSAPrivateKey]) -> None:
    config = AuthConfig(mode="jwks", jwks_url="http://127.0.0.1:9/certs")  # discard port: nothing listens
    verifier = JwtVerifier(config)
    try:
        error = await refusal(verifier, jwt.encode(keycloak_claims(), "x" * 32, algorithm="HS256"))
        assert error.field == "alg"  # an HS256 token never reaches the network
        error = await refusal(verifier, rs256_token(rsa_keys["k1"], "k1"))
        assert (error.status, error.code) == (503, "auth_unavailable")
    finally:
        await verifier.close()


async def test_middleware_with_keycloak_tokens(
    setup: Setup, keycloak: Keycloak, rsa_keys: dict[str, rsa.RSAPrivateKey]
) -> None:
    async def admin_route(request: web.Request) -> web.Response:
        return web.json_response({"subject": require_admin(request).subject})

    app = web.Application(middlewares=[auth_middleware(setup.verifier)])
    app.router.add_get("/admin/endpoints", admin_route)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        ok = await client.get(
            "/admin/endpoints",
            headers={"Authorization": f"Bearer {rs256_token(rsa_keys['k1'], 'k1')}", "X-Tenant-Id": "t1"},
        )
        confused = await client.get(
            "/admin/endpoints",
            headers={
                "Authorization": f"Bearer {hs256_signed_with_public_key(rsa_keys['k1'], 'k1')}",
                "X-Tenant-Id": "t1",
            },
        )
        keycloak.status = 500
        setup.clock.now += 10_000
        keycloak.keys = []
        stale_but_working = await client.get(
            "/admin/endpoints",
            headers={"Authorization": f"Bearer {rs256_token(rsa_keys['k1'], 'k1')}", "X-Tenant-Id": "t1"},
        )

        assert ok.status == 200
        assert await ok.json() == {"subject": keycloak_claims()["sub"]}
        assert confused.status == 401
        assert confused.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
        assert stale_but_working.status == 200


async def test_middleware_answers_503_without_a_challenge_when_keys_are_unavailable(
    setup: Setup, keycloak: Keycloak, rsa_keys: dict[str, rsa.RSAPrivateKey]
) -> None:
    keycloak.status = 500
    app = web.Application(middlewares=[auth_middleware(setup.verifier)])
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        response = await client.get(
            "/admin/endpoints",
            headers={"Authorization": f"Bearer {rs256_token(rsa_keys['k1'], 'k1')}", "X-Tenant-Id": "t1"},
        )

        assert response.status == 503
        assert "WWW-Authenticate" not in response.headers
        assert (await response.json())["error"]["code"] == "auth_unavailable"
