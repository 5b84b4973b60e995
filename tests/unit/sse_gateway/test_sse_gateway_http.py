"""The gateway's HTTP surface in-process, over an in-memory embed store (no broker, no database):
the bridge exchange, refresh and revoke, CORS, the stream's authorisation, routing, resume, caps,
the sweep and drain. The same paths run against the real stack in tests/integration/test_sse*.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer

from aforo.shared.embed import (
    BridgeTokenUseDocument,
    EmbedKeyDocument,
    EmbedKeyStatus,
    EmbedSessionDocument,
    SigningKeyStatus,
)
from aforo.shared.lifecycle import ServiceRunner
from aforo.shared.secret_box import generate_key
from aforo.shared.serde import dumps_json
from aforo.shared.settings import ConfigurationError
from aforo.sse_gateway.app import SseGatewayService
from aforo.sse_gateway.connections import CloseReason
from aforo.sse_gateway.embed_store import EmbedStore, Revocations
from aforo.sse_gateway.embed_tokens import SigningKey
from aforo.sse_gateway.history import HistoryEntry
from aforo.sse_gateway.integrator_tokens import mint_bridge_token
from aforo.sse_gateway.settings import SseGatewaySettings
from aforo.sse_gateway.widget_messages import WidgetEvent, widget_event_from_envelope

SESSION_SECRET = "unit-session-secret-0123456789abcdef-xyz"
BRIDGE_SECRET = "unit-bridge-secret-0123456789abcdef-xyzw"
ORIGIN = "https://app.acme.com"
FOREIGN = "https://evil.example"
Client = TestClient[web.Request, web.Application]


class MemoryEmbedStore(EmbedStore):
    """EmbedStore's contract over dicts, for tests without MongoDB."""

    def __init__(self) -> None:  # no MongoDB, no SecretBox: everything is held here
        self.embed_keys: dict[tuple[str, str], EmbedKeyDocument] = {}
        self.signing_keys: dict[tuple[str, str], SigningKey] = {}
        self.sessions: dict[tuple[str, str], EmbedSessionDocument] = {}
        self.token_uses: dict[tuple[str, str], BridgeTokenUseDocument] = {}

    async def embed_key(self, tenant_id: str, key_id: str) -> EmbedKeyDocument | None:
        return self.embed_keys.get((tenant_id, key_id))

    async def origin_has_active_key(self, origin: str) -> bool:
        return any(key.usable and origin in key.allowed_domains for key in self.embed_keys.values())

    async def signing_key(self, tenant_id: str, kid: str) -> SigningKey | None:
        return self.signing_keys.get((tenant_id, kid))

    async def record_bridge_token_use(self, use: BridgeTokenUseDocument) -> bool:
        if (use.tenant_id, use.jti) in self.token_uses:
            return False
        self.token_uses[(use.tenant_id, use.jti)] = use
        return True

    async def create_session(self, session: EmbedSessionDocument) -> None:
        self.sessions[(session.tenant_id, session.session_id)] = session

    async def session(self, tenant_id: str, session_id: str) -> EmbedSessionDocument | None:
        return self.sessions.get((tenant_id, session_id))

    async def extend_session(self, tenant_id: str, session_id: str, expires_at: datetime) -> bool:
        session = self.sessions.get((tenant_id, session_id))
        if session is None or session.revoked:
            return False
        self.sessions[(tenant_id, session_id)] = session.model_copy(update={"expires_at": expires_at})
        return True

    async def revoke_session(self, tenant_id: str, session_id: str, now: datetime) -> None:
        session = self.sessions[(tenant_id, session_id)]
        self.sessions[(tenant_id, session_id)] = session.model_copy(update={"revoked_at": now})

    async def revoked_since(self, since: datetime) -> Revocations:
        return Revocations(
            sessions=frozenset(
                key for key, s in self.sessions.items() if s.revoked_at and s.revoked_at >= since
            ),
            embed_keys=frozenset(
                key for key, k in self.embed_keys.items() if k.revoked_at and k.revoked_at >= since
            ),
        )

    def add_tenant(self, tenant: str, *, key_id: str = "ek_1", kid: str = "bsk_1") -> None:
        now = datetime.now(UTC)
        self.embed_keys[(tenant, key_id)] = EmbedKeyDocument(
            tenant_id=tenant,
            key_id=key_id,
            allowed_domains=[ORIGIN],
            status=EmbedKeyStatus.ACTIVE,
            created_at=now,
            updated_at=now,
        )
        self.signing_keys[(tenant, kid)] = SigningKey(
            tenant, kid, BRIDGE_SECRET, SigningKeyStatus.ACTIVE, None
        )

    def revoke_embed_key(self, tenant: str, key_id: str) -> None:
        key = self.embed_keys[(tenant, key_id)]
        self.embed_keys[(tenant, key_id)] = key.model_copy(
            update={"status": EmbedKeyStatus.REVOKED, "revoked_at": datetime.now(UTC)}
        )


def settings(**overrides: Any) -> SseGatewaySettings:
    values: dict[str, Any] = {
        "session_secret": SESSION_SECRET,
        "secrets_encryption_keys": generate_key(),
        "kafka_bootstrap_servers": "127.0.0.1:1",
        "mongo_uri": "mongodb://127.0.0.1:1",
        "heartbeat_seconds": 0.2,
        "max_connections_per_stream": 2,
    }
    values.update(overrides)
    return SseGatewaySettings(**values)


@pytest.mark.parametrize(
    ("overrides", "setting"),
    [
        ({"session_secret": None}, "AFORO_SSE_GATEWAY_SESSION_SECRET"),
        ({"session_secret": "too-short"}, "AFORO_SSE_GATEWAY_SESSION_SECRET"),
        ({"secrets_encryption_keys": None}, "AFORO_SECRETS_ENCRYPTION_KEYS"),
        ({"secrets_encryption_keys": "not-a-fernet-key"}, "AFORO_SECRETS_ENCRYPTION_KEYS"),
    ],
)
def test_a_configuration_that_cannot_work_is_refused_naming_the_setting(
    overrides: dict[str, Any], setting: str
) -> None:
    with pytest.raises(ConfigurationError) as refused:
        SseGatewayService(settings(**overrides))

    assert setting in str(refused.value)
    for value in overrides.values():
        if value:
            assert value not in str(refused.value)


class Gateway:
    def __init__(self, service: SseGatewayService, store: MemoryEmbedStore, client: Client) -> None:
        self.service = service
        self.store = store
        self.client = client

    async def exchange(
        self, tenant: str = "t1", customer: str = "c1", origin: str = ORIGIN
    ) -> ClientResponse:
        token = mint_bridge_token(kid="bsk_1", secret=BRIDGE_SECRET, tenant_id=tenant, customer_id=customer)
        return await self.client.post(
            "/v1/embed/session", json={"bridgeToken": token, "embedKey": "ek_1"}, headers={"Origin": origin}
        )

    async def session_token(self, tenant: str = "t1", customer: str = "c1") -> str:
        response = await self.exchange(tenant, customer)
        assert response.status == 201, await response.text()
        token: str = (await response.json())["sessionToken"]
        return token

    async def open_stream(self, token: str, origin: str = ORIGIN, **query: str) -> ClientResponse:
        return await self.client.get(
            "/v1/embed/stream", params={"access_token": token, **query}, headers={"Origin": origin}
        )

    def publish(self, event_id: str, customer: str = "c1", tenant: str = "t1", **payload: Any) -> WidgetEvent:
        event = widget_event_from_envelope(
            dumps_json(
                {
                    "eventId": event_id,
                    "eventType": "aforo.invoice.created",
                    "category": "Billing",
                    "severity": "INFO",
                    "tenantId": tenant,
                    "customerId": customer,
                    "occurredAt": "2026-11-23T09:00:00.000Z",
                    "payload": {"tenantId": tenant, "customerId": customer, "invoiceId": event_id, **payload},
                }
            )
        )
        assert isinstance(event, WidgetEvent)
        key = (tenant, customer)
        now_ms = int(datetime.now(UTC).timestamp() * 1000)
        if self.service.history.record(key, HistoryEntry(event.event_id, event.frame, now_ms), now_ms):
            self.service.registry.publish(key, event.event_type, event.frame)
        return event


@contextlib.asynccontextmanager
async def running_gateway(**overrides: Any) -> AsyncIterator[Gateway]:
    service = SseGatewayService(settings(**overrides))
    store = MemoryEmbedStore()
    store.add_tenant("t1")
    store.add_tenant("t2")
    service.context.store = store
    service.feed.loaded.set()
    app = ServiceRunner(service, service.settings).build_http_app()
    async with TestClient(TestServer(app)) as client:
        yield Gateway(service, store, client)
        service.registry.close_all(CloseReason.DRAINING)
        service.registry.abort_all()


@pytest_asyncio.fixture
async def gateway() -> AsyncIterator[Gateway]:
    async with running_gateway() as running:
        yield running


async def read_events(response: ClientResponse, count: int, timeout: float = 3.0) -> list[dict[str, str]]:
    """Parse SSE events (id/event/data) until `count` have arrived."""
    events: list[dict[str, str]] = []
    current: dict[str, str] = {}

    async def collect() -> None:
        nonlocal current
        while len(events) < count:
            line = (await response.content.readline()).decode()
            if line == "":
                raise AssertionError(f"stream ended after {len(events)} events")
            line = line.rstrip("\n")
            if not line:
                if "data" in current:
                    events.append(current)
                current = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(": ")
                current[name] = value

    await asyncio.wait_for(collect(), timeout)
    return events


async def test_a_bridge_exchange_issues_a_session_with_cors_for_the_allowed_origin(gateway: Gateway) -> None:
    response = await gateway.exchange()

    assert response.status == 201
    body = await response.json()
    assert set(body) == {"sessionToken", "expiresAt", "allowedOrigins"}
    assert body["allowedOrigins"] == [ORIGIN]
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert response.headers["Vary"] == "Origin"
    (session,) = gateway.store.sessions.values()
    assert (session.tenant_id, session.customer_id, session.origin) == ("t1", "c1", ORIGIN)


@pytest.mark.parametrize(
    ("body", "origin", "status", "code"),
    [
        ("foreign origin", FOREIGN, 403, "origin_not_allowed"),
        ("no origin", None, 403, "origin_not_allowed"),
        ({"bridgeToken": "x", "embedKey": "ek_1"}, ORIGIN, 401, "malformed_token"),
        ({"bridgeToken": "x"}, ORIGIN, 422, "validation_error"),
        ({"bridgeToken": 5, "embedKey": "ek_1"}, ORIGIN, 422, "validation_error"),
        ("not json", ORIGIN, 400, "malformed_json"),
        ("deeply nested", ORIGIN, 400, "json_too_deep"),
        ("duplicate key", ORIGIN, 400, "duplicate_key"),
        ("lone surrogate", ORIGIN, 422, "validation_error"),
        ("utf-16 with a BOM", ORIGIN, 400, "malformed_json"),
        ("text/plain", ORIGIN, 415, "unsupported_media_type"),
        ("form", ORIGIN, 415, "unsupported_media_type"),
        ("no content type", ORIGIN, 415, "unsupported_media_type"),
        ("charset=utf-16", ORIGIN, 415, "unsupported_media_type"),
        ("unknown embed key", ORIGIN, 403, "unknown_embed_key"),
        ("another tenant's embed key", ORIGIN, 403, "unknown_embed_key"),
        ("revoked embed key", ORIGIN, 403, "embed_key_revoked"),
        ("revoked signing key", ORIGIN, 401, "signing_key_not_usable"),
    ],
)
async def test_exchange_refusals(
    gateway: Gateway, body: Any, origin: str | None, status: int, code: str
) -> None:
    token = mint_bridge_token(kid="bsk_1", secret=BRIDGE_SECRET, tenant_id="t1", customer_id="c1")
    payload: Any = {"bridgeToken": token, "embedKey": "ek_1"}
    if body == "unknown embed key":
        payload["embedKey"] = "ek_nope"
    elif body == "another tenant's embed key":
        gateway.store.add_tenant("t2", key_id="ek_t2")
        payload["embedKey"] = "ek_t2"
    elif body == "revoked embed key":
        gateway.store.revoke_embed_key("t1", "ek_1")
    elif body == "revoked signing key":
        gateway.store.signing_keys[("t1", "bsk_1")] = SigningKey(
            "t1", "bsk_1", BRIDGE_SECRET, SigningKeyStatus.REVOKED, None
        )
    elif isinstance(body, dict):
        payload = body
    headers = {"Origin": origin} if origin else {}
    raw_bodies: dict[str, tuple[bytes, str | None]] = {
        "not json": (b"{nope", "application/json"),
        "deeply nested": (b'{"bridgeToken": ' + b"[" * 5000 + b"]" * 5000 + b"}", "application/json"),
        "duplicate key": (
            b'{"bridgeToken": "a", "embedKey": "ek_1", "embedKey": "ek_2"}',
            "application/json",
        ),
        "lone surrogate": (b'{"bridgeToken": "\\ud800", "embedKey": "ek_1"}', "application/json"),
        "utf-16 with a BOM": (
            '{"bridgeToken": "a", "embedKey": "ek_1"}'.encode("utf-16"),
            "application/json",
        ),
        "text/plain": (dumps_json(payload), "text/plain"),
        "form": (b"bridgeToken=a&embedKey=ek_1", "application/x-www-form-urlencoded"),
        "no content type": (dumps_json(payload), None),
        "charset=utf-16": (dumps_json(payload), "application/json; charset=utf-16"),
    }
    if isinstance(body, str) and body in raw_bodies:
        raw, content_type = raw_bodies[body]
        # aiohttp's client adds application/octet-stream to bytes unless told to skip the header
        sent = dict(headers, **({"Content-Type": content_type} if content_type else {}))
        response = await gateway.client.post(
            "/v1/embed/session",
            data=raw,
            headers=sent,
            skip_auto_headers=() if content_type else ("Content-Type",),
        )
    else:
        response = await gateway.client.post("/v1/embed/session", json=payload, headers=headers)

    assert response.status == status
    assert (await response.json())["error"]["code"] == code
    assert response.headers["Vary"] == "Origin"
    if origin == FOREIGN or code == "origin_not_allowed":
        assert "Access-Control-Allow-Origin" not in response.headers
    elif code != "origin_not_allowed":
        assert response.headers["Access-Control-Allow-Origin"] == ORIGIN  # the SDK can read why
    assert not gateway.store.sessions


async def test_preflight_is_answered_only_for_origins_some_active_key_allows(gateway: Gateway) -> None:
    allowed = await gateway.client.options(
        "/v1/embed/session", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
    )
    foreign = await gateway.client.options(
        "/v1/embed/session", headers={"Origin": FOREIGN, "Access-Control-Request-Method": "POST"}
    )

    assert allowed.status == 204
    assert allowed.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Content-Type" in allowed.headers["Access-Control-Allow-Headers"]
    assert foreign.status == 403
    assert "Access-Control-Allow-Origin" not in foreign.headers


async def test_a_stream_gets_its_own_customers_events_only(gateway: Gateway) -> None:
    mine = await gateway.open_stream(await gateway.session_token("t1", "c1"))
    neighbour = await gateway.open_stream(await gateway.session_token("t1", "c2"))
    other_tenant = await gateway.open_stream(await gateway.session_token("t2", "c1"))
    for response in (mine, neighbour, other_tenant):
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert response.headers["Vary"] == "Origin"

    gateway.publish("e1", customer="c1", amountDue=12000, customerEmail="ana@example.com")
    gateway.publish("n1", customer="c2")

    (event,) = await read_events(mine, 1)
    assert event["id"] == "e1"
    assert event["event"] == "aforo.invoice.created"
    assert json.loads(event["data"])["payload"] == {"invoiceId": "e1", "amountDue": 12000}
    (neighbours,) = await read_events(neighbour, 1)
    assert neighbours["id"] == "n1"
    with pytest.raises(TimeoutError):
        await read_events(other_tenant, 1, timeout=0.5)


@pytest.mark.parametrize(
    ("origin", "query", "status", "code"),
    [
        (FOREIGN, {}, 403, "origin_not_allowed"),
        (None, {}, 403, "origin_not_allowed"),
        (ORIGIN, {"tenantId": "t1", "customerId": "c1"}, 403, "stream_forbidden"),  # a (t1, c2) session
        (ORIGIN, {"tenantId": "t2"}, 403, "stream_forbidden"),
        (ORIGIN, {"access_token": "forged"}, 401, "malformed_token"),
    ],
)
async def test_stream_refusals(
    gateway: Gateway, origin: str | None, query: dict[str, str], status: int, code: str
) -> None:
    token = await gateway.session_token("t1", "c2")
    params = {"access_token": token, **query}
    headers = {"Origin": origin} if origin else {}

    response = await gateway.client.get("/v1/embed/stream", params=params, headers=headers)

    assert response.status == status
    assert (await response.json())["error"]["code"] == code
    if origin != ORIGIN:  # a foreign or missing origin learns nothing: the browser hides the answer
        assert "Access-Control-Allow-Origin" not in response.headers
    else:  # the allowed origin's SDK may read why it was refused
        assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert len(gateway.service.registry) == 0


async def test_the_session_token_may_come_in_the_authorization_header(gateway: Gateway) -> None:
    token = await gateway.session_token()

    response = await gateway.client.get(
        "/v1/embed/stream", headers={"Origin": ORIGIN, "Authorization": f"Bearer {token}"}
    )

    assert response.status == 200


async def test_last_event_id_replays_exactly_the_missed_events(gateway: Gateway) -> None:
    token = await gateway.session_token()
    for event_id in ("e1", "e2", "e3", "e4"):
        gateway.publish(event_id)

    by_header = await gateway.client.get(
        "/v1/embed/stream", params={"access_token": token}, headers={"Origin": ORIGIN, "Last-Event-ID": "e2"}
    )
    by_query = await gateway.open_stream(token, lastEventId="e3")

    assert [event["id"] for event in await read_events(by_header, 2)] == ["e3", "e4"]
    assert [event["id"] for event in await read_events(by_query, 1)] == ["e4"]
    gateway.publish("e5")
    gateway.publish("e4")  # a re-published record: no browser sees it twice
    gateway.publish("e6")
    assert [event["id"] for event in await read_events(by_header, 2)] == ["e5", "e6"]
    assert [event["id"] for event in await read_events(by_query, 2)] == ["e5", "e6"]


async def test_caps_and_readiness_refuse_with_retryable_statuses(gateway: Gateway) -> None:
    token = await gateway.session_token()
    first, second = await gateway.open_stream(token), await gateway.open_stream(token)
    third = await gateway.open_stream(token)
    assert (first.status, second.status, third.status) == (200, 200, 429)
    assert (await third.json())["error"]["code"] == "stream_full"
    assert third.headers["Retry-After"]

    gateway.service.feed.loaded.clear()
    other = await gateway.open_stream(await gateway.session_token("t1", "c7"))
    assert other.status == 503
    assert (await other.json())["error"]["code"] == "not_ready"


async def test_refresh_keeps_the_session_and_revoke_ends_it(gateway: Gateway) -> None:
    token = await gateway.session_token()
    headers = {"Origin": ORIGIN, "Authorization": f"Bearer {token}"}

    refreshed = await gateway.client.post("/v1/embed/session/refresh", headers=headers)
    assert refreshed.status == 200
    new_token = (await refreshed.json())["sessionToken"]
    assert refreshed.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert (await gateway.open_stream(new_token)).status == 200

    foreign = await gateway.client.post("/v1/embed/session/refresh", headers={**headers, "Origin": FOREIGN})
    assert foreign.status == 403

    revoked = await gateway.client.post("/v1/embed/session/revoke", headers=headers)
    assert revoked.status == 204
    for attempt in (
        await gateway.open_stream(new_token),
        await gateway.client.post("/v1/embed/session/refresh", headers=headers),
    ):
        assert attempt.status == 401
        assert (await attempt.json())["error"]["code"] == "session_revoked"


async def test_the_sweep_ends_streams_of_revoked_sessions_and_keys(gateway: Gateway) -> None:
    since = datetime.now(UTC) - timedelta(seconds=60)
    revoked_session = await gateway.open_stream(await gateway.session_token("t1", "c1"))
    revoked_key = await gateway.open_stream(await gateway.session_token("t2", "c1"))
    untouched = await gateway.open_stream(await gateway.session_token("t1", "c2"))
    (session_id,) = [
        sid for (tenant, sid), s in gateway.store.sessions.items() if s.customer_id == "c1" and tenant == "t1"
    ]
    await gateway.store.revoke_session("t1", session_id, datetime.now(UTC))
    gateway.store.revoke_embed_key("t2", "ek_1")

    assert await gateway.service.sweep(since) == 2

    for ended in (revoked_session, revoked_key):
        await asyncio.wait_for(ended.content.read(), 2.0)  # the server closed it
    gateway.publish("still-here", customer="c2")
    assert [event["id"] for event in await read_events(untouched, 1)] == ["still-here"]


async def test_drain_closes_every_stream_and_refuses_new_ones(gateway: Gateway) -> None:
    token = await gateway.session_token()
    stream = await gateway.open_stream(token)
    assert stream.status == 200

    await asyncio.wait_for(gateway.service.drain(), 2.0)

    await asyncio.wait_for(stream.content.read(), 2.0)
    assert len(gateway.service.registry) == 0
    refused = await gateway.open_stream(token)
    assert refused.status == 503
    assert (await refused.json())["error"]["code"] == "draining"


async def test_idle_streams_get_heartbeat_comments(gateway: Gateway) -> None:
    stream = await gateway.open_stream(await gateway.session_token())
    assert await asyncio.wait_for(stream.content.readline(), 2.0) == b"retry: 2000\n"

    for _ in range(2):  # what the service's heartbeat task does every heartbeat_seconds
        gateway.service.registry.tick()

    lines = [await asyncio.wait_for(stream.content.readline(), 2.0) for _ in range(2)]
    assert lines == [b"\n", b": heartbeat\n"]


async def test_the_sdk_is_served_as_javascript(gateway: Gateway) -> None:
    response = await gateway.client.get("/sdk/aforo-embed.js")

    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/javascript")
    assert "AforoEmbed" in await response.text()


async def test_unknown_paths_answer_json(gateway: Gateway) -> None:
    response = await gateway.client.get("/v1/embed/nope", headers={"Origin": ORIGIN})

    assert response.status == 404
    assert (await response.json())["error"]["code"] == "not_found"


async def test_a_bridge_token_is_exchanged_once(gateway: Gateway) -> None:
    token = mint_bridge_token(kid="bsk_1", secret=BRIDGE_SECRET, tenant_id="t1", customer_id="c1")
    body = {"bridgeToken": token, "embedKey": "ek_1"}

    # A refused attempt (a foreign origin) does not use the token up; the first exchange does.
    foreign = await gateway.client.post("/v1/embed/session", json=body, headers={"Origin": FOREIGN})
    first = await gateway.client.post("/v1/embed/session", json=body, headers={"Origin": ORIGIN})
    replayed = await gateway.client.post("/v1/embed/session", json=body, headers={"Origin": ORIGIN})

    assert (foreign.status, first.status) == (403, 201)
    assert replayed.status == 401
    error = (await replayed.json())["error"]
    assert (error["code"], error["field"]) == ("bridge_token_replayed", "jti")
    assert replayed.headers["Access-Control-Allow-Origin"] == ORIGIN  # the SDK can read why
    assert len(gateway.store.sessions) == 1
    (use,) = gateway.store.token_uses.values()
    assert use.expires_at > datetime.now(UTC)
    # Another token of the same customer exchanges fine.
    assert (await gateway.exchange()).status == 201


async def wait_until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        await asyncio.sleep(0.02)


async def test_a_client_that_went_away_frees_its_slot_at_the_next_tick(gateway: Gateway) -> None:
    """Without handler cancellation (as under this test server) the heartbeat tick notices it."""
    token = await gateway.session_token()
    first, second = await gateway.open_stream(token), await gateway.open_stream(token)
    assert (await gateway.open_stream(token)).status == 429  # the per-customer cap is 2

    first.close()
    second.close()

    def ticked_empty() -> bool:
        gateway.service.registry.tick()
        return len(gateway.service.registry) == 0

    await wait_until(ticked_empty)
    assert (await gateway.open_stream(token)).status == 200


async def test_drain_ends_a_stream_stuck_writing_to_a_client_that_stopped_reading() -> None:
    async with running_gateway(
        connection_queue_frames=100_000, connection_queue_bytes=10**9, shutdown_grace_seconds=2
    ) as gateway:
        token = await gateway.session_token()
        # The stalled client: a tiny receive buffer, and nothing read after the response headers.
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.setblocking(False)
        server = gateway.client.server
        await asyncio.get_running_loop().sock_connect(raw, (server.host, server.port))
        reader, writer = await asyncio.open_connection(sock=raw, limit=4096)
        writer.write(
            f"GET /v1/embed/stream?access_token={token} HTTP/1.1\r\nHost: x\r\nOrigin: {ORIGIN}\r\n\r\n".encode()
        )
        assert b" 200 " in await reader.readuntil(b"\r\n\r\n")
        (connection,) = gateway.service.registry
        frame = b"data: " + b"x" * 65536 + b"\n\n"

        def stuck() -> bool:
            """Frames stay queued: the handler is blocked in a write the client never reads."""
            gateway.service.registry.publish(("t1", "c1"), "aforo.invoice.created", frame)
            return connection.queued > 1

        await wait_until(stuck, timeout=20)

        await asyncio.wait_for(gateway.service.drain(), 5.0)

        assert len(gateway.service.registry) == 0
        assert connection.closed is CloseReason.DRAINING
        writer.close()


async def test_token_responses_are_never_cached_and_show_no_server_version(gateway: Gateway) -> None:
    exchanged = await gateway.exchange()
    token = (await exchanged.json())["sessionToken"]
    refreshed = await gateway.client.post(
        "/v1/embed/session/refresh", headers={"Origin": ORIGIN, "Authorization": f"Bearer {token}"}
    )
    stream = await gateway.open_stream(token)
    refused = await gateway.client.post("/v1/embed/session", json={}, headers={"Origin": ORIGIN})
    for response in (exchanged, refreshed, stream, refused):
        assert response.headers["Cache-Control"].startswith("no-store"), response.url
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "aiohttp" not in response.headers["Server"]
        assert "Python" not in response.headers["Server"]
    stream.close()


async def test_session_exchanges_are_limited_per_client_address() -> None:
    async with running_gateway(
        session_exchange_rate_per_second=0.01,
        session_exchange_burst=3,
        client_address_header="X-Forwarded-For",
    ) as gateway:

        async def exchange_from(address: str) -> ClientResponse:
            token = mint_bridge_token(kid="bsk_1", secret=BRIDGE_SECRET, tenant_id="t1", customer_id="c1")
            return await gateway.client.post(
                "/v1/embed/session",
                json={"bridgeToken": token, "embedKey": "ek_1"},
                headers={"Origin": ORIGIN, "X-Forwarded-For": f"10.9.9.9, {address}"},
            )

        assert [(await exchange_from("203.0.113.7")).status for _ in range(3)] == [201, 201, 201]
        limited = await exchange_from("203.0.113.7")
        assert limited.status == 429
        assert (await limited.json())["error"]["code"] == "rate_limited"
        assert int(limited.headers["Retry-After"]) >= 1
        assert limited.headers["Access-Control-Allow-Origin"] == ORIGIN  # the SDK can read why
        assert (await exchange_from("198.51.100.1")).status == 201  # another address has its own bucket
