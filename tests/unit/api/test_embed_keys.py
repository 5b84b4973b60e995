"""Embed-key and bridge-signing-key admin routes: bodies, views, the promote rules, and the role and
token checks every route makes before it touches MongoDB. (Against SecantusDB and a real gateway:
tests/integration/test_sse_admin_keys.py.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import ValidationError

from aforo.api.auth import AuthConfig, JwtVerifier, auth_middleware
from aforo.api.boundary import problem_middleware
from aforo.api.context import ApiContext
from aforo.api.dev_tokens import mint_dev_token
from aforo.api.problems import ConflictError, invalid_request_from
from aforo.api.publishing import Publisher
from aforo.api.resources.embed_keys.routes import EmbedKeyRoutes
from aforo.api.resources.embed_keys.rules import (
    EmbedKeyCreate,
    EmbedKeyUpdate,
    EmbedSessionRevocation,
    MintedSigningKey,
    embed_key_view,
    new_embed_key,
    new_signing_key,
    promotion_refusal,
    signing_key_view,
    superseded_signing_keys,
)
from aforo.api.settings import ApiSettings
from aforo.shared.embed import SigningKeyStatus
from aforo.shared.kafka import TopicNames
from aforo.shared.mongo import MongoStore
from aforo.shared.secret_box import SecretBox, generate_key

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
JWT_SECRET = "unit-test-secret-0123456789abcdef-xyz"


def test_an_embed_key_body_normalises_its_origins() -> None:
    body = EmbedKeyCreate.model_validate(
        {"allowedDomains": ["https://App.Acme.com:443", "http://localhost:5173"]}
    )

    assert body.allowed_domains == ["https://app.acme.com", "http://localhost:5173"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "allowedDomains"),
        ({"allowedDomains": []}, "allowedDomains"),
        ({"allowedDomains": ["https://app.acme.com/dashboard"]}, "allowedDomains"),
        ({"allowedDomains": ["*"]}, "allowedDomains"),
        ({"allowedDomains": ["https://*.acme.com"]}, "allowedDomains"),
        ({"allowedDomains": "https://app.acme.com"}, "allowedDomains"),
        ({"allowedDomains": ["https://app.acme.com"], "extra": 1}, "extra"),
    ],
)
def test_unusable_embed_key_bodies_name_the_field(body: dict[str, Any], field: str) -> None:
    for model in (EmbedKeyCreate, EmbedKeyUpdate):
        with pytest.raises(ValidationError) as refused:
            model.model_validate(body)
        problem = invalid_request_from(refused.value)
        assert problem.status == 422
        assert problem.field is not None
        assert problem.field.startswith(field)


def test_a_session_revocation_names_a_customer() -> None:
    assert EmbedSessionRevocation.model_validate({"customerId": "c1"}).customer_id == "c1"
    with pytest.raises(ValidationError):
        EmbedSessionRevocation.model_validate({"customerId": ""})


def test_an_embed_key_is_born_active_and_viewed_without_its_tenant() -> None:
    key = new_embed_key(
        "t1", EmbedKeyCreate.model_validate({"allowedDomains": ["https://a.com"]}), key_id="ek_1", now=NOW
    )

    view = embed_key_view(key.to_document()).to_wire()

    assert view == {
        "keyId": "ek_1",
        "allowedDomains": ["https://a.com"],
        "status": "ACTIVE",
        "createdAt": "2026-11-23T09:00:00.000Z",
        "updatedAt": "2026-11-23T09:00:00.000Z",
        "revokedAt": None,
    }


def signing_document(status: SigningKeyStatus, retires_at: datetime | None = None) -> dict[str, Any]:
    document = new_signing_key("t1", kid="bsk_1", ciphertext="ciphertext", now=NOW).to_document()
    document.update({"status": status.value, "retiresAt": retires_at})
    return document


def test_a_minted_signing_key_is_next_and_its_view_never_shows_the_ciphertext() -> None:
    document = new_signing_key("t1", kid="bsk_1", ciphertext="gAAAA-ciphertext", now=NOW).to_document()

    view = signing_key_view(document, NOW).to_wire()
    minted = MintedSigningKey(**signing_key_view(document, NOW).model_dump(), secret="s3cret").to_wire()

    assert document["status"] == "NEXT"
    assert view["status"] == "NEXT"
    assert "gAAAA-ciphertext" not in str(view)
    assert "secretCiphertext" not in view
    assert minted["secret"] == "s3cret"
    assert set(minted) == {*view, "secret"}


@pytest.mark.parametrize(
    ("status", "retires_at", "shown"),
    [
        (SigningKeyStatus.NEXT, None, "NEXT"),
        (SigningKeyStatus.ACTIVE, None, "ACTIVE"),
        (SigningKeyStatus.ACTIVE, NOW + HOUR, "ACTIVE"),
        (SigningKeyStatus.ACTIVE, NOW - HOUR, "RETIRED"),
        (SigningKeyStatus.REVOKED, None, "REVOKED"),
    ],
)
def test_views_show_the_effective_status(
    status: SigningKeyStatus, retires_at: datetime | None, shown: str
) -> None:
    assert signing_key_view(signing_document(status, retires_at), NOW).to_wire()["status"] == shown


@pytest.mark.parametrize(
    ("status", "retires_at", "refused"),
    [
        (SigningKeyStatus.NEXT, None, False),
        (SigningKeyStatus.ACTIVE, None, True),
        (SigningKeyStatus.ACTIVE, NOW - HOUR, True),
        (SigningKeyStatus.RETIRED, None, True),
        (SigningKeyStatus.REVOKED, None, True),
    ],
)
def test_only_a_next_key_can_be_promoted(
    status: SigningKeyStatus, retires_at: datetime | None, refused: bool
) -> None:
    refusal = promotion_refusal(signing_document(status, retires_at), NOW)

    if refused:
        assert isinstance(refusal, ConflictError)
        assert refusal.code == "signing_key_not_next"
    else:
        assert refusal is None


def active(kid: str, promoted_at: datetime | None) -> dict[str, Any]:
    return {"kid": kid, "createdAt": NOW - HOUR, "promotedAt": promoted_at}


@pytest.mark.parametrize(
    ("keys", "superseded"),
    [
        ([], []),
        ([active("bsk_a", NOW)], []),
        # A promote retires the key promoted before it, never the other way round...
        ([active("bsk_old", NOW - HOUR), active("bsk_new", NOW)], ["bsk_old"]),
        ([active("bsk_new", NOW), active("bsk_old", NOW - HOUR)], ["bsk_old"]),
        # ...also when its own key lost a race to a newer one (it then retires itself),
        ([active("bsk_b", NOW + timedelta(milliseconds=1)), active("bsk_a", NOW)], ["bsk_a"]),
        # and two promotes in the same millisecond agree on one winner: the greater kid.
        ([active("bsk_b", NOW), active("bsk_a", NOW)], ["bsk_a"]),
        # A key promoted before `promotedAt` existed counts from its creation.
        ([active("bsk_legacy", None), active("bsk_a", NOW)], ["bsk_legacy"]),
        # Naive datetimes (a client that is not tz-aware) compare as UTC.
        ([active("bsk_naive", (NOW + HOUR).replace(tzinfo=None)), active("bsk_a", NOW)], ["bsk_a"]),
    ],
)
def test_a_promote_keeps_only_the_newest_active_key(
    keys: list[dict[str, Any]], superseded: list[str]
) -> None:
    assert superseded_signing_keys(keys) == superseded


def test_concurrent_promotes_in_any_interleaving_leave_exactly_one_key_not_retiring() -> None:
    """Each promote sets its key ACTIVE, then retires what it reads as superseded; whatever each read
    saw (its own key and maybe the other's), one key is left ACTIVE without `retiresAt`."""
    a, b = active("bsk_a", NOW), active("bsk_b", NOW + timedelta(milliseconds=3))
    old = active("bsk_old", NOW - HOUR)
    for a_sees_b in (False, True):
        for b_sees_a in (False, True):
            if not (a_sees_b or b_sees_a):
                continue  # the later of the two reads follows both writes, so it sees both keys
            retired = set(superseded_signing_keys([old, a, *([b] if a_sees_b else [])]))
            retired |= set(superseded_signing_keys([old, b, *([a] if b_sees_a else [])]))
            assert {"bsk_old", "bsk_a", "bsk_b"} - retired == {"bsk_b"}, (a_sees_b, b_sees_a)


def test_an_internationalised_domain_must_be_given_in_punycode() -> None:
    with pytest.raises(ValidationError) as refused:
        EmbedKeyCreate.model_validate({"allowedDomains": ["https://faß.de"]})
    problem = invalid_request_from(refused.value)

    assert problem.status == 422
    assert problem.field is not None
    assert problem.field.startswith("allowedDomains")
    assert "punycode" in problem.message
    assert "xn--" in problem.message
    assert EmbedKeyCreate.model_validate({"allowedDomains": ["https://xn--fa-hia.de"]}).allowed_domains == [
        "https://xn--fa-hia.de"
    ]


def api_settings(**overrides: Any) -> ApiSettings:
    values: dict[str, Any] = {
        "auth_mode": "hs256",
        "jwt_hs256_secret": JWT_SECRET,
        "secrets_encryption_keys": generate_key(),
        "kafka_bootstrap_servers": "127.0.0.1:1",
        "mongo_uri": "mongodb://127.0.0.1:1",
        "secret_rotation_overlap_seconds": 7200,
    }
    values.update(overrides)
    return ApiSettings(**values)


def context() -> ApiContext:
    settings = api_settings()
    # Nothing here connects: the refusals under test happen before any MongoDB or Kafka call.
    mongo = MongoStore(settings.mongo_uri, "unused", app_name="unit", timeout_ms=200)

    def no_producer() -> Any:
        raise AssertionError("embed key routes never publish")

    publisher = Publisher(no_producer, TopicNames("x."), 1.0)
    assert settings.secrets_encryption_keys is not None
    return ApiContext(settings, mongo, publisher, SecretBox.from_setting(settings.secrets_encryption_keys))


def test_the_overlap_defaults_to_the_apis_rotation_overlap() -> None:
    assert EmbedKeyRoutes(context()).overlap == timedelta(hours=2)
    assert EmbedKeyRoutes(context(), overlap=timedelta(seconds=5)).overlap == timedelta(seconds=5)


ROUTES = [
    ("post", "/api/v1/admin/embed-keys"),
    ("get", "/api/v1/admin/embed-keys"),
    ("patch", "/api/v1/admin/embed-keys/ek_1"),
    ("delete", "/api/v1/admin/embed-keys/ek_1"),
    ("post", "/api/v1/admin/bridge-signing-keys"),
    ("get", "/api/v1/admin/bridge-signing-keys"),
    ("post", "/api/v1/admin/bridge-signing-keys/bsk_1/promote"),
    ("delete", "/api/v1/admin/bridge-signing-keys/bsk_1"),
    ("post", "/api/v1/admin/embed-sessions/revoke"),
]


@pytest_asyncio.fixture
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    verifier = JwtVerifier(AuthConfig(mode="hs256", hs256_secret=JWT_SECRET))
    app = web.Application(middlewares=[problem_middleware, auth_middleware(verifier)])
    app.add_routes(EmbedKeyRoutes(context()).routes())
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


def test_the_routes_are_the_documented_nine() -> None:
    app = web.Application()
    app.add_routes(EmbedKeyRoutes(context()).routes())

    registered = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }

    assert registered == {
        (method, path.replace("ek_1", "{keyId}").replace("bsk_1", "{kid}")) for method, path in ROUTES
    }


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_every_route_needs_an_admin_of_the_tenant(
    client: TestClient[web.Request, web.Application], method: str, path: str
) -> None:
    config = AuthConfig(mode="hs256", hs256_secret=JWT_SECRET)
    customer = mint_dev_token(config, tenant_id="t1", roles=["CUSTOMER"], customer_id="c1")
    admin_of_t2 = mint_dev_token(config, tenant_id="t2", roles=["ADMIN"])

    anonymous = await client.request(method, path, json={})
    as_customer = await client.request(
        method, path, json={}, headers={"Authorization": f"Bearer {customer}", "X-Tenant-Id": "t1"}
    )
    other_tenant = await client.request(
        method, path, json={}, headers={"Authorization": f"Bearer {admin_of_t2}", "X-Tenant-Id": "t1"}
    )

    assert anonymous.status == 401
    assert as_customer.status == 403
    assert (await as_customer.json())["error"]["code"] == "insufficient_role"
    assert other_tenant.status == 403
    assert (await other_tenant.json())["error"]["code"] == "tenant_mismatch"


async def test_a_bad_body_is_refused_before_any_write(
    client: TestClient[web.Request, web.Application],
) -> None:
    token = mint_dev_token(AuthConfig(mode="hs256", hs256_secret=JWT_SECRET), tenant_id="t1", roles=["OWNER"])

    response = await client.post(
        "/api/v1/admin/embed-keys",
        json={"allowedDomains": ["https://*.acme.com"]},
        headers={"Authorization": f"Bearer {token}", "X-Tenant-Id": "t1"},
    )

    assert response.status == 422
    assert (await response.json())["error"]["field"].startswith("allowedDomains")
