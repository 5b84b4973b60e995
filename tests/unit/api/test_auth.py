"""API authentication with HS256 (the local mode): configuration, every refusal, roles, the middleware.

What a client sees is asserted: the status, the JSON error code and `WWW-Authenticate`. RS256 with
a JWKS lives in test_auth_jwks.py.
"""

import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from aforo.api.auth import (
    AuthConfig,
    AuthConfigError,
    AuthError,
    JwtVerifier,
    Principal,
    auth_middleware,
    principal_from_claims,
    principal_of,
    require_admin,
    require_customer,
)

SECRET = "local-dev-secret-0123456789abcdef"  # 33 bytes: above the 32-byte floor
OTHER_SECRET = "another-secret-of-enough-length-0123"
TENANT = "t1"

HS256 = AuthConfig(mode="hs256", hs256_secret=SECRET)
WITH_ISSUER_AND_AUDIENCE = AuthConfig(
    mode="hs256", hs256_secret=SECRET, issuer="https://id.example/realms/aforo", audience="aforo-api"
)

AUTH_ENV = (
    "AUTH_MODE",
    "JWT_HS256_SECRET",
    "JWKS_URL",
    "JWT_ISSUER",
    "JWT_AUDIENCE",
)


def claims(**overrides: Any) -> dict[str, Any]:
    """A valid admin token's claims; an override of None removes the claim."""
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": "user-1",
        "tenant_id": TENANT,
        "roles": ["ADMIN"],
        "iat": now,
        # Hours, not minutes: parametrized tokens are minted at collection and the unit tests may
        # run after a long integration suite; still well under the 24 h maximum lifetime.
        "exp": now + 6 * 3600,
    }
    base.update(overrides)
    return {key: value for key, value in base.items() if value is not None}


def hs256_token(payload: dict[str, Any], secret: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(payload, secret, algorithm=algorithm)


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unsigned_token(payload: dict[str, Any]) -> str:
    """`alg: none`, crafted by hand as an attacker would: header.payload. with an empty signature."""
    header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{b64url(json.dumps(payload).encode())}."


async def refusal(config: AuthConfig, token: str) -> AuthError:
    with pytest.raises(AuthError) as raised:
        await JwtVerifier(config).verify(token)
    return raised.value


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "hs256", "hs256_secret": "x" * 31}, "at least 32 bytes"),
        ({"mode": "hs256", "hs256_secret": None}, "AFORO_API_JWT_HS256_SECRET) is required"),
        ({"mode": "jwks"}, "AFORO_API_JWKS_URL) is required"),
        ({"mode": "rs512", "jwks_url": "http://x"}, "is not 'hs256' or 'jwks'"),
        ({"mode": "hs256", "hs256_secret": SECRET, "leeway_seconds": -1}, "leeway_seconds"),
        ({"mode": "jwks", "jwks_url": "http://x", "jwks_cache_seconds": 0}, "jwks_cache_seconds"),
    ],
)
def test_config_refuses_unworkable_settings(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(AuthConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        AuthConfig(**kwargs)


def test_config_counts_secret_bytes_not_characters() -> None:
    AuthConfig(mode="hs256", hs256_secret="é" * 16)  # 16 characters, 32 bytes

    with pytest.raises(AuthConfigError):
        AuthConfig(mode="hs256", hs256_secret="é" * 15 + "x")


def test_config_never_shows_the_secret() -> None:
    assert SECRET not in repr(HS256)


@pytest.fixture
def auth_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in AUTH_ENV:
        monkeypatch.delenv(f"AFORO_API_{name}", raising=False)
        monkeypatch.delenv(f"AFORO_{name}", raising=False)
    return monkeypatch


def test_config_from_env_reads_the_api_variables(auth_env: pytest.MonkeyPatch) -> None:
    auth_env.setenv("AFORO_API_AUTH_MODE", "HS256")
    auth_env.setenv("AFORO_API_JWT_HS256_SECRET", SECRET)
    auth_env.setenv("AFORO_API_JWT_ISSUER", "https://id.example/realms/aforo")
    auth_env.setenv("AFORO_API_JWT_AUDIENCE", "")

    config = AuthConfig.from_env()

    assert config == AuthConfig(mode="hs256", hs256_secret=SECRET, issuer="https://id.example/realms/aforo")
    assert config.algorithm == "HS256"


def test_config_from_env_falls_back_to_the_common_prefix(auth_env: pytest.MonkeyPatch) -> None:
    auth_env.setenv("AFORO_AUTH_MODE", "jwks")
    auth_env.setenv("AFORO_JWKS_URL", "http://keycloak:8080/realms/aforo/protocol/openid-connect/certs")
    auth_env.setenv("AFORO_API_JWT_AUDIENCE", "aforo-api")

    config = AuthConfig.from_env()

    assert config.mode == "jwks"
    assert config.algorithm == "RS256"
    assert config.jwks_url == "http://keycloak:8080/realms/aforo/protocol/openid-connect/certs"
    assert config.audience == "aforo-api"


def test_config_from_env_defaults_to_jwks_and_so_fails_closed(auth_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(AuthConfigError, match="AFORO_API_JWKS_URL"):
        AuthConfig.from_env()


def test_config_from_env_names_a_bad_field_without_its_value(auth_env: pytest.MonkeyPatch) -> None:
    auth_env.setenv("AFORO_API_HTTP_PORT", "not-a-port-s3cr3t")

    with pytest.raises(AuthConfigError, match="http_port") as raised:
        AuthConfig.from_env()

    assert "s3cr3t" not in str(raised.value)


# --------------------------------------------------------------------------- claims → principal


@pytest.mark.parametrize(
    ("token_claims", "roles"),
    [
        ({"roles": ["ADMIN"]}, {"ADMIN"}),
        (
            {"roles": None, "realm_access": {"roles": ["BILLING_ADMIN", "offline_access"]}},
            {"BILLING_ADMIN", "offline_access"},
        ),
        ({"roles": ["OWNER"], "realm_access": {"roles": ["CUSTOMER"]}}, {"OWNER", "CUSTOMER"}),
        ({"roles": None}, set()),
        ({"roles": [], "realm_access": {}}, set()),
    ],
)
def test_roles_come_from_roles_and_realm_access(token_claims: dict[str, Any], roles: set[str]) -> None:
    assert principal_from_claims(claims(**token_claims)).roles == frozenset(roles)


@pytest.mark.parametrize(
    ("token_claims", "field"),
    [
        ({"tenant_id": None}, "tenant_id"),
        ({"tenant_id": ""}, "tenant_id"),
        ({"tenant_id": 7}, "tenant_id"),
        ({"sub": ""}, "sub"),
        ({"roles": "ADMIN"}, "roles"),
        ({"roles": ["ADMIN", 1]}, "roles"),
        ({"realm_access": ["ADMIN"]}, "realm_access"),
        ({"realm_access": {"roles": "ADMIN"}}, "realm_access.roles"),
        ({"customer_id": ""}, "customer_id"),
        ({"customer_id": 42}, "customer_id"),
    ],
)
def test_claims_of_the_wrong_shape_are_refused(token_claims: dict[str, Any], field: str) -> None:
    with pytest.raises(AuthError) as raised:
        principal_from_claims(claims(**token_claims))

    assert (raised.value.status, raised.value.code, raised.value.field) == (401, "invalid_token", field)


@pytest.mark.parametrize(
    ("roles", "is_admin", "is_customer"),
    [
        ({"OWNER"}, True, False),
        ({"ADMIN"}, True, False),
        ({"BILLING_ADMIN"}, True, False),
        ({"CUSTOMER"}, False, True),
        ({"admin"}, False, False),  # role names are exact
        ({"VIEWER"}, False, False),
        (set(), False, False),
    ],
)
def test_principal_role_checks(roles: set[str], is_admin: bool, is_customer: bool) -> None:
    principal = Principal(tenant_id=TENANT, subject="s", roles=frozenset(roles), customer_id=None)

    assert (principal.is_admin, principal.is_customer) == (is_admin, is_customer)


# --------------------------------------------------------------------------- verification


async def test_a_valid_token_yields_its_principal() -> None:
    principal = await JwtVerifier(HS256).verify(hs256_token(claims(roles=["CUSTOMER"], customer_id="c1")))

    assert principal == Principal(
        tenant_id=TENANT, subject="user-1", roles=frozenset({"CUSTOMER"}), customer_id="c1"
    )


@pytest.mark.parametrize(
    ("token", "code", "field"),
    [
        ("not-a-jwt", "malformed_token", None),
        ("a.b.c", "malformed_token", None),
        ("", "malformed_token", None),
        (unsigned_token(claims()), "invalid_token", "alg"),
        (hs256_token(claims(), secret=OTHER_SECRET), "invalid_token", None),
        (hs256_token(claims(), secret=SECRET * 2, algorithm="HS512"), "invalid_token", "alg"),
        (hs256_token(claims())[:-4] + "AAAA", "invalid_token", None),
        (hs256_token(claims(exp=int(time.time()) - 3600)), "token_expired", "exp"),
        (hs256_token(claims(nbf=int(time.time()) + 3600)), "token_not_yet_valid", None),
        (hs256_token(claims(iat=int(time.time()) + 3600)), "token_not_yet_valid", None),
        (hs256_token(claims(exp=None)), "invalid_token", "exp"),
        (hs256_token(claims(sub=None)), "invalid_token", "sub"),
        (hs256_token(claims(tenant_id=None)), "invalid_token", "tenant_id"),
        (hs256_token(claims(exp=str(int(time.time()) + 6 * 3600))), "invalid_token", "exp"),
        (hs256_token(claims(iat=str(int(time.time())))), "invalid_token", "iat"),
        (hs256_token(claims(nbf=str(int(time.time()) - 10))), "invalid_token", "nbf"),
        (hs256_token(claims(exp=int(time.time()) + 100 * 365 * 86_400)), "token_lifetime_too_long", "exp"),
        (
            hs256_token(claims(iat=None, exp=int(time.time()) + 2 * 86_400)),
            "token_lifetime_too_long",
            "exp",
        ),
        (
            hs256_token(claims(iat=int(time.time()) - 3 * 86_400, exp=int(time.time()) + 6 * 3600)),
            "token_lifetime_too_long",
            "exp",
        ),
        (hs256_token(claims(tenant_id="t\u202e1")), "invalid_token", "tenant_id"),
        (hs256_token(claims(customer_id="c\x001")), "invalid_token", "customer_id"),
    ],
    ids=[
        "not-a-jwt",
        "three-garbage-parts",
        "empty",
        "alg-none",
        "wrong-key",
        "other-hmac-algorithm",
        "tampered-signature",
        "expired",
        "not-yet-valid",
        "issued-in-the-future",
        "no-exp",
        "no-sub",
        "no-tenant",
        "numeric-string-exp",
        "numeric-string-iat",
        "numeric-string-nbf",
        "a-century-long",
        "no-iat-and-exp-past-the-maximum",
        "iat-to-exp-past-the-maximum",
        "bidi-override-in-tenant",
        "nul-in-customer",
    ],
)
async def test_hs256_refusals(token: str, code: str, field: str | None) -> None:
    error = await refusal(HS256, token)

    assert (error.status, error.code, error.field) == (401, code, field)


async def test_the_maximum_lifetime_is_a_setting() -> None:
    now = int(time.time())
    week = AuthConfig(mode="hs256", hs256_secret=SECRET, max_token_lifetime_seconds=7 * 86_400)
    principal = await JwtVerifier(week).verify(hs256_token(claims(iat=now, exp=now + 6 * 86_400)))
    assert principal.tenant_id == TENANT
    assert (
        await JwtVerifier(HS256).verify(hs256_token(claims(iat=now, exp=now + 86_400)))
    ).tenant_id == TENANT


async def test_clock_skew_within_the_leeway_is_tolerated() -> None:
    now = int(time.time())
    token = hs256_token(claims(exp=now - 10, nbf=now + 10))

    assert (await JwtVerifier(HS256).verify(token)).tenant_id == TENANT


@pytest.mark.parametrize(
    ("token_claims", "code"),
    [
        ({"iss": "https://evil.example/realms/aforo", "aud": "aforo-api"}, "invalid_issuer"),
        ({"aud": "aforo-api"}, "invalid_token"),  # no iss at all
        ({"iss": "https://id.example/realms/aforo", "aud": "account"}, "invalid_audience"),
        ({"iss": "https://id.example/realms/aforo", "aud": ["account", "billing"]}, "invalid_audience"),
        ({"iss": "https://id.example/realms/aforo"}, "invalid_token"),  # no aud at all
    ],
)
async def test_issuer_and_audience_are_checked_when_configured(
    token_claims: dict[str, Any], code: str
) -> None:
    error = await refusal(WITH_ISSUER_AND_AUDIENCE, hs256_token(claims(**token_claims)))

    assert (error.status, error.code) == (401, code)


@pytest.mark.parametrize(
    "aud", ["aforo-api", ["account", "aforo-api"]], ids=["single-audience", "audience-in-a-list"]
)
async def test_matching_issuer_and_audience_pass(aud: str | list[str]) -> None:
    token = hs256_token(claims(iss="https://id.example/realms/aforo", aud=aud))

    assert (await JwtVerifier(WITH_ISSUER_AND_AUDIENCE).verify(token)).subject == "user-1"


async def test_issuer_and_audience_are_not_checked_when_unset() -> None:
    token = hs256_token(claims(iss="https://anyone.example", aud=["account", "whatever"]))

    assert (await JwtVerifier(HS256).verify(token)).subject == "user-1"


# --------------------------------------------------------------------------- the middleware, end to end


async def admin_route(request: web.Request) -> web.Response:
    principal = require_admin(request)
    return web.json_response({"tenant": principal.tenant_id, "subject": principal.subject})


async def portal_route(request: web.Request) -> web.Response:
    principal = require_customer(request)
    body = await request.json() if request.can_read_body else {}
    # The customer comes from the token; a customerId in the body is ignored.
    return web.json_response({"customer": principal.customer_id, "bodySaid": body.get("customerId")})


async def health_route(_: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


def tiny_app(verifier: JwtVerifier) -> web.Application:
    app = web.Application(middlewares=[auth_middleware(verifier)])
    app.router.add_get("/healthz", health_route)
    app.router.add_get("/admin/endpoints", admin_route)
    app.router.add_post("/portal/preferences", portal_route)
    return app


@pytest.fixture
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with TestClient(TestServer(tiny_app(JwtVerifier(HS256)), host="127.0.0.1")) as test_client:
        yield test_client


ADMIN = hs256_token(claims(roles=["OWNER"]))
CUSTOMER = hs256_token(claims(roles=["CUSTOMER"], customer_id="c1"))
CUSTOMER_WITHOUT_ID = hs256_token(claims(roles=["CUSTOMER"]))
NO_ROLES = hs256_token(claims(roles=[]))


def bearer(token: str, tenant: str | None = TENANT) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    if tenant is not None:
        headers["X-Tenant-Id"] = tenant
    return headers


@pytest.mark.parametrize(
    ("method", "path", "headers", "status", "code", "challenge"),
    [
        ("GET", "/admin/endpoints", {"X-Tenant-Id": TENANT}, 401, "missing_token", "Bearer"),
        (
            "GET",
            "/admin/endpoints",
            {"Authorization": f"Basic {ADMIN}", "X-Tenant-Id": TENANT},
            401,
            "missing_token",
            "Bearer",
        ),
        (
            "GET",
            "/admin/endpoints",
            {"Authorization": "Bearer", "X-Tenant-Id": TENANT},
            401,
            "missing_token",
            "Bearer",
        ),
        (
            "GET",
            "/admin/endpoints",
            {"Authorization": "Bearer a b", "X-Tenant-Id": TENANT},
            401,
            "missing_token",
            "Bearer",
        ),
        (
            "GET",
            "/admin/endpoints",
            bearer("garbage"),
            401,
            "malformed_token",
            'Bearer error="invalid_token"',
        ),
        (
            "GET",
            "/admin/endpoints",
            bearer(unsigned_token(claims())),
            401,
            "invalid_token",
            'Bearer error="invalid_token"',
        ),
        (
            "GET",
            "/admin/endpoints",
            bearer(hs256_token(claims(), secret=OTHER_SECRET)),
            401,
            "invalid_token",
            'Bearer error="invalid_token"',
        ),
        (
            "GET",
            "/admin/endpoints",
            bearer(hs256_token(claims(exp=int(time.time()) - 3600))),
            401,
            "token_expired",
            'Bearer error="invalid_token"',
        ),
        ("GET", "/missing-route", {}, 401, "missing_token", "Bearer"),  # unknown paths reveal nothing
        ("GET", "/admin/endpoints", bearer(ADMIN, tenant=None), 400, "tenant_header_missing", None),
        ("GET", "/admin/endpoints", bearer(ADMIN, tenant="  "), 400, "tenant_header_missing", None),
        ("GET", "/admin/endpoints", bearer(ADMIN, tenant="t2"), 403, "tenant_mismatch", None),
        ("GET", "/admin/endpoints", bearer(CUSTOMER), 403, "insufficient_role", None),
        ("GET", "/admin/endpoints", bearer(NO_ROLES), 403, "insufficient_role", None),
        ("POST", "/portal/preferences", bearer(ADMIN), 403, "insufficient_role", None),
        ("POST", "/portal/preferences", bearer(CUSTOMER_WITHOUT_ID), 403, "customer_id_missing", None),
        ("POST", "/portal/preferences", bearer(CUSTOMER, tenant="t2"), 403, "tenant_mismatch", None),
    ],
    ids=[
        "no-authorization",
        "basic-scheme",
        "bearer-without-token",
        "bearer-with-two-words",
        "malformed",
        "alg-none",
        "wrong-key",
        "expired",
        "unknown-path-still-needs-auth",
        "no-tenant-header",
        "blank-tenant-header",
        "tenant-mismatch",
        "customer-on-admin-route",
        "no-roles-on-admin-route",
        "admin-on-portal-route",
        "customer-without-customer-id",
        "customer-of-another-tenant",
    ],
)
async def test_middleware_refusals(
    client: TestClient[web.Request, web.Application],
    method: str,
    path: str,
    headers: dict[str, str],
    status: int,
    code: str,
    challenge: str | None,
) -> None:
    response = await client.request(method, path, headers=headers)

    assert response.status == status
    assert response.content_type == "application/json"
    error = (await response.json())["error"]
    assert error["code"] == code
    assert error["message"]
    assert response.headers.get("WWW-Authenticate") == challenge


async def test_middleware_never_echoes_the_token(client: TestClient[web.Request, web.Application]) -> None:
    token = hs256_token(claims(), secret=OTHER_SECRET)

    response = await client.get("/admin/endpoints", headers=bearer(token))

    assert token not in await response.text()
    assert token.split(".")[1] not in await response.text()


@pytest.mark.parametrize(
    "token", [ADMIN, hs256_token(claims(roles=None, realm_access={"roles": ["BILLING_ADMIN"]}))]
)
async def test_admin_route_accepts_admin_roles(
    client: TestClient[web.Request, web.Application], token: str
) -> None:
    response = await client.get("/admin/endpoints", headers=bearer(token))

    assert response.status == 200
    assert await response.json() == {"tenant": TENANT, "subject": "user-1"}


async def test_bearer_scheme_is_case_insensitive(client: TestClient[web.Request, web.Application]) -> None:
    response = await client.get(
        "/admin/endpoints", headers={"Authorization": f"bearer {ADMIN}", "X-Tenant-Id": TENANT}
    )

    assert response.status == 200


async def test_portal_route_takes_the_customer_from_the_token(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.post("/portal/preferences", headers=bearer(CUSTOMER), json={"customerId": "c2"})

    assert response.status == 200
    assert await response.json() == {"customer": "c1", "bodySaid": "c2"}


async def test_public_paths_need_no_credentials(client: TestClient[web.Request, web.Application]) -> None:
    response = await client.get("/healthz")

    assert response.status == 200


async def test_routes_outside_the_middleware_fail_closed() -> None:
    async def peek(request: web.Request) -> web.Response:
        return web.json_response({"tenant": principal_of(request).tenant_id})

    app = web.Application()
    app.router.add_get("/admin/endpoints", admin_route)
    app.router.add_get("/peek", peek)
    async with TestClient(TestServer(app, host="127.0.0.1")) as bare:
        for path in ("/admin/endpoints", "/peek"):
            response = await bare.get(path, headers=bearer(ADMIN))

            assert response.status == 401
            assert response.headers["WWW-Authenticate"] == "Bearer"
            assert (await response.json())["error"]["code"] == "missing_token"
