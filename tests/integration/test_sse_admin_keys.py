"""The embed admin routes on SecantusDB, with a real gateway process reading what they write: keys
minted and rotated through the API are what the gateway verifies bridge tokens with; domain changes,
key revocations and session revocations take effect at the gateway; other tenants see 404.

Both are real processes on one database: the API as `make up` runs it, the gateway beside it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp

from aforo.api.auth import AuthConfig
from aforo.api.dev_tokens import mint_dev_token
from aforo.sse_gateway.integrator_tokens import mint_bridge_token
from tests.support.kafka import unique_prefix
from tests.support.processes import ServiceProcess
from tests.support.sse_harness import (
    ORIGIN,
    GatewayUnderTest,
    gateway_under_test,
    open_stream,
)
from tests.support.stack import TEST_JWT_SECRET, LocalStack

OVERLAP = timedelta(seconds=2)
OTHER_ORIGIN = "https://portal.acme.test"


class AdminApi:
    """The API process's embed admin routes, called as an admin of a tenant."""

    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url = url
        self.session = session
        self.auth = AuthConfig(mode="hs256", hs256_secret=TEST_JWT_SECRET)

    def headers(self, tenant: str, roles: Sequence[str] = ("ADMIN",)) -> dict[str, str]:
        token = mint_dev_token(self.auth, tenant_id=tenant, roles=list(roles))
        return {"Authorization": f"Bearer {token}", "X-Tenant-Id": tenant}

    async def call(
        self, method: str, path: str, tenant: str = "t1", body: Any = None, roles: Sequence[str] = ("ADMIN",)
    ) -> tuple[int, Any]:
        async with self.session.request(
            method, f"{self.url}{path}", json=body, headers=self.headers(tenant, roles)
        ) as response:
            payload = await response.json() if response.status != 204 else None
            return response.status, payload


@asynccontextmanager
async def admin_api(harness: GatewayUnderTest, session: aiohttp.ClientSession) -> AsyncIterator[AdminApi]:
    """The real API process on the gateway's database and encryption key, with a short key overlap."""
    process = ServiceProcess(
        "aforo.api",
        "AFORO_API_",
        {**harness.env, "AFORO_API_SECRET_ROTATION_OVERLAP_SECONDS": str(OVERLAP.total_seconds())},
        harness.log_dir,
    ).start()
    try:
        await process.wait_ready(timeout=60)
        yield AdminApi(process.url, session)
    finally:
        code = await asyncio.to_thread(process.terminate, 30)
    assert code == 0, process.log_text()[-4000:]


def bridge_token(signing_key: dict[str, Any], customer: str = "c1") -> str:
    """What the integrator's server signs for one of tenant t1's customers, with a key minted by the API."""
    return mint_bridge_token(
        kid=signing_key["kid"], secret=signing_key["secret"], tenant_id="t1", customer_id=customer
    )


async def exchange_status(
    session: aiohttp.ClientSession, gateway_url: str, bridge_token: str, embed_key: str, origin: str = ORIGIN
) -> tuple[int, Any]:
    async with session.post(
        f"{gateway_url}/v1/embed/session",
        json={"bridgeToken": bridge_token, "embedKey": embed_key},
        headers={"Origin": origin},
    ) as response:
        return response.status, await response.json()


async def test_keys_from_the_api_drive_the_gateway_through_a_full_rotation(
    local_stack: LocalStack, service_log_dir: Path
) -> None:
    async with (
        gateway_under_test(local_stack, service_log_dir, unique_prefix()) as harness,
        aiohttp.ClientSession() as session,
        admin_api(harness, session) as api,
    ):
        gateway = await harness.start_gateway()

        status, embed_key = await api.call(
            "POST", "/api/v1/admin/embed-keys", body={"allowedDomains": [ORIGIN]}
        )
        assert status == 201
        key_id = embed_key["keyId"]
        status, first = await api.call("POST", "/api/v1/admin/bridge-signing-keys")
        assert status == 201
        assert first["status"] == "NEXT"
        assert len(first["secret"]) >= 40

        # A NEXT key already verifies: the integrator deploys it, then the admin promotes it.
        once = bridge_token(first)
        assert (await exchange_status(session, gateway.url, once, key_id))[0] == 201
        # A bridge token is exchanged once: a replay (a leaked token, within its 5 minutes) is refused.
        status, refused = await exchange_status(session, gateway.url, once, key_id)
        assert (status, refused["error"]["code"], refused["error"]["field"]) == (
            401,
            "bridge_token_replayed",
            "jti",
        )
        status, promoted = await api.call("POST", f"/api/v1/admin/bridge-signing-keys/{first['kid']}/promote")
        assert (status, promoted["status"], promoted["retiresAt"]) == (200, "ACTIVE", None)
        assert (await api.call("POST", f"/api/v1/admin/bridge-signing-keys/{first['kid']}/promote"))[0] == 409

        # Rotation: mint the next key, promote it; the first keeps verifying for the overlap, then not.
        status, second = await api.call("POST", "/api/v1/admin/bridge-signing-keys")
        assert status == 201
        assert (await api.call("POST", f"/api/v1/admin/bridge-signing-keys/{second['kid']}/promote"))[
            0
        ] == 200
        status, listing = await api.call("GET", "/api/v1/admin/bridge-signing-keys")
        by_kid = {item["kid"]: item for item in listing["items"]}
        assert by_kid[first["kid"]]["status"] == "ACTIVE"
        assert by_kid[first["kid"]]["retiresAt"] is not None
        assert all("secret" not in item and "secretCiphertext" not in item for item in listing["items"])
        assert (await exchange_status(session, gateway.url, bridge_token(first), key_id))[0] == 201
        await asyncio.sleep(OVERLAP.total_seconds() + 0.5)
        status, refused = await exchange_status(session, gateway.url, bridge_token(first), key_id)
        assert (status, refused["error"]["code"]) == (401, "signing_key_not_usable")
        status, listing = await api.call("GET", "/api/v1/admin/bridge-signing-keys")
        assert {item["kid"]: item["status"] for item in listing["items"]} == {
            first["kid"]: "RETIRED",
            second["kid"]: "ACTIVE",
        }
        assert (await exchange_status(session, gateway.url, bridge_token(second), key_id))[0] == 201

        # Revoking the active key stops it at once, and ends the sessions it minted (on every
        # gateway within a sweep); a session minted by another key stays.
        status, third = await api.call("POST", "/api/v1/admin/bridge-signing-keys")
        _, by_second = await exchange_status(session, gateway.url, bridge_token(second), key_id)
        _, by_third = await exchange_status(session, gateway.url, bridge_token(third), key_id)
        async with (
            open_stream(session, gateway.url, by_second["sessionToken"]) as minted_by_revoked,
            open_stream(session, gateway.url, by_third["sessionToken"]) as minted_by_other,
        ):
            assert (await api.call("DELETE", f"/api/v1/admin/bridge-signing-keys/{second['kid']}"))[0] == 204
            assert (await api.call("DELETE", f"/api/v1/admin/bridge-signing-keys/{second['kid']}"))[0] == 204
            await minted_by_revoked.wait_ended(timeout=10)
            assert not minted_by_other.ended.is_set()
        status, refused = await exchange_status(session, gateway.url, bridge_token(second), key_id)
        assert (status, refused["error"]["code"]) == (401, "signing_key_not_usable")
        async with session.post(
            f"{gateway.url}/v1/embed/session/refresh",
            headers={"Origin": ORIGIN, "Authorization": f"Bearer {by_second['sessionToken']}"},
        ) as refresh:
            assert refresh.status == 401
            assert (await refresh.json())["error"]["code"] == "session_revoked"

        # Two promotes at once (the third key and a fourth) leave exactly one key ACTIVE and not
        # retiring: neither retires the other, leaving the tenant without a key.
        status, fourth = await api.call("POST", "/api/v1/admin/bridge-signing-keys")
        promotes = await asyncio.gather(
            *(
                api.call("POST", f"/api/v1/admin/bridge-signing-keys/{key['kid']}/promote")
                for key in (third, fourth)
            )
        )
        assert [status for status, _ in promotes] == [200, 200]
        status, listing = await api.call("GET", "/api/v1/admin/bridge-signing-keys")
        staying = [
            item["kid"]
            for item in listing["items"]
            if item["status"] == "ACTIVE" and item["retiresAt"] is None
        ]
        assert len(staying) == 1, listing["items"]


async def test_domain_changes_and_revocations_reach_the_gateway(
    local_stack: LocalStack, service_log_dir: Path
) -> None:
    async with (
        gateway_under_test(local_stack, service_log_dir, unique_prefix()) as harness,
        aiohttp.ClientSession() as session,
        admin_api(harness, session) as api,
    ):
        gateway = await harness.start_gateway()
        _, embed_key = await api.call("POST", "/api/v1/admin/embed-keys", body={"allowedDomains": [ORIGIN]})
        key_id = embed_key["keyId"]
        _, signing = await api.call("POST", "/api/v1/admin/bridge-signing-keys")

        status, refused = await exchange_status(
            session, gateway.url, bridge_token(signing, "c1"), key_id, OTHER_ORIGIN
        )
        assert (status, refused["error"]["code"]) == (403, "origin_not_allowed")
        status, updated = await api.call(
            "PATCH", f"/api/v1/admin/embed-keys/{key_id}", body={"allowedDomains": [ORIGIN, OTHER_ORIGIN]}
        )
        assert (status, updated["allowedDomains"]) == (200, [ORIGIN, OTHER_ORIGIN])
        assert (
            await exchange_status(session, gateway.url, bridge_token(signing, "c1"), key_id, OTHER_ORIGIN)
        )[0] == 201

        # An admin ends one customer's sessions: that customer's stream ends, the other's does not.
        _, c1 = await exchange_status(session, gateway.url, bridge_token(signing, "c1"), key_id)
        _, c2 = await exchange_status(session, gateway.url, bridge_token(signing, "c2"), key_id)
        async with (
            open_stream(session, gateway.url, c1["sessionToken"]) as c1_stream,
            open_stream(session, gateway.url, c2["sessionToken"]) as c2_stream,
        ):
            status, revoked = await api.call(
                "POST", "/api/v1/admin/embed-sessions/revoke", body={"customerId": "c1"}
            )
            assert (status, revoked["revoked"]) == (200, 2)  # both c1 sessions issued above
            await c1_stream.wait_ended(timeout=10)
            assert not c2_stream.ended.is_set()

            # Revoking the embed key ends every stream opened with it, and no new session is issued.
            assert (await api.call("DELETE", f"/api/v1/admin/embed-keys/{key_id}"))[0] == 204
            await c2_stream.wait_ended(timeout=10)
        status, refused = await exchange_status(session, gateway.url, bridge_token(signing, "c2"), key_id)
        assert (status, refused["error"]["code"]) == (403, "embed_key_revoked")
        status, conflict = await api.call(
            "PATCH", f"/api/v1/admin/embed-keys/{key_id}", body={"allowedDomains": [ORIGIN]}
        )
        assert (status, conflict["error"]["code"]) == (409, "embed_key_revoked")
        status, listing = await api.call("GET", "/api/v1/admin/embed-keys")
        assert [(item["keyId"], item["status"]) for item in listing["items"]] == [(key_id, "REVOKED")]


async def test_another_tenants_keys_are_not_found(local_stack: LocalStack, service_log_dir: Path) -> None:
    async with (
        gateway_under_test(local_stack, service_log_dir, unique_prefix()) as harness,
        aiohttp.ClientSession() as session,
        admin_api(harness, session) as api,
    ):
        _, embed_key = await api.call("POST", "/api/v1/admin/embed-keys", body={"allowedDomains": [ORIGIN]})
        _, signing = await api.call("POST", "/api/v1/admin/bridge-signing-keys", roles=("BILLING_ADMIN",))
        key_path = f"/api/v1/admin/embed-keys/{embed_key['keyId']}"
        signing_path = f"/api/v1/admin/bridge-signing-keys/{signing['kid']}"

        for method, path, body in [
            ("PATCH", key_path, {"allowedDomains": [ORIGIN]}),
            ("DELETE", key_path, None),
            ("POST", f"{signing_path}/promote", None),
            ("DELETE", signing_path, None),
        ]:
            status, refused = await api.call(method, path, tenant="t2", body=body)
            assert status == 404, (method, path)
            assert refused["error"]["code"] in ("embed_key_not_found", "signing_key_not_found")
        assert (await api.call("GET", "/api/v1/admin/embed-keys", tenant="t2"))[1] == {"items": []}
        assert (await api.call("GET", "/api/v1/admin/bridge-signing-keys", tenant="t2"))[1] == {"items": []}
        status, revoked = await api.call(
            "POST", "/api/v1/admin/embed-sessions/revoke", tenant="t2", body={"customerId": "c1"}
        )
        assert (status, revoked) == (200, {"revoked": 0})
        # Untouched for their own tenant.
        status, listing = await api.call("GET", "/api/v1/admin/embed-keys", roles=("OWNER",))
        assert [item["status"] for item in listing["items"]] == ["ACTIVE"]
