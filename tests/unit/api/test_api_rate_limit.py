"""The per-tenant request limit: a tenant over its bucket gets 429 with Retry-After, others do not."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from aforo.api.auth import AuthConfig, JwtVerifier, auth_middleware
from aforo.api.boundary import problem_middleware
from aforo.api.tenant_rate_limit import RATE_LIMITED, tenant_rate_limit_middleware
from aforo.shared.rate_limit import TokenBuckets

SECRET = "rate-limit-secret-0123456789abcdef-xyz"


def headers(tenant: str) -> dict[str, str]:
    now = int(time.time())
    token = jwt.encode(
        {"sub": "u", "tenant_id": tenant, "roles": ["ADMIN"], "iat": now, "exp": now + 600}, SECRET
    )
    return {"Authorization": f"Bearer {token}", "X-Tenant-Id": tenant}


class FrozenClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest_asyncio.fixture
async def limited() -> AsyncIterator[tuple[TestClient[web.Request, web.Application], FrozenClock]]:
    async def hello(_: web.Request) -> web.Response:
        return web.json_response({"hello": "world"})

    clock = FrozenClock()
    verifier = JwtVerifier(AuthConfig(mode="hs256", hs256_secret=SECRET))
    app = web.Application(
        middlewares=[
            problem_middleware,
            auth_middleware(verifier),
            tenant_rate_limit_middleware(TokenBuckets(rate_per_second=1.0, burst=2), clock),
        ]
    )
    app.router.add_get("/hello", hello)
    app.router.add_get("/healthz", hello)
    async with TestClient(TestServer(app)) as client:
        yield client, clock


async def test_a_tenant_over_its_bucket_gets_429_with_retry_after(limited: Any) -> None:
    client, clock = limited
    before = RATE_LIMITED._value.get()
    assert [(await client.get("/hello", headers=headers("t1"))).status for _ in range(2)] == [200, 200]

    refused = await client.get("/hello", headers=headers("t1"))
    assert refused.status == 429
    assert refused.headers["Retry-After"] == "1"
    assert (await refused.json()) == {
        "error": {
            "code": "rate_limited",
            "message": "this tenant is over its request rate; retry after Retry-After seconds",
        }
    }
    assert RATE_LIMITED._value.get() == before + 1

    assert (await client.get("/hello", headers=headers("t2"))).status == 200  # another tenant is untouched
    assert (await client.get("/healthz")).status == 200  # public paths have no tenant and no limit
    clock.now += 1.0
    assert (await client.get("/hello", headers=headers("t1"))).status == 200
