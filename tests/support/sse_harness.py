"""The SSE gateway under test: real `python -m aforo.sse_gateway` processes on the session's Kafka
broker and SecantusDB, embed keys and signing keys seeded in MongoDB the way the API stores them,
an SSE client that parses what a browser would. No tests here: `test_sse*.py`, the browser tests
and `bench/bench_sse.py` import these helpers.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from aforo.shared.collections import BRIDGE_SIGNING_KEYS, EMBED_KEYS
from aforo.shared.embed import (
    EmbedKeyDocument,
    EmbedKeyStatus,
    SigningKeyDocument,
    SigningKeyStatus,
    new_embed_key_id,
    new_signing_key_id,
    new_signing_secret,
)
from aforo.shared.envelope import format_utc
from aforo.shared.mongo import MongoStore
from aforo.shared.secret_box import SecretBox
from aforo.shared.serde import dumps_json, loads_json
from aforo.sse_gateway.integrator_tokens import mint_bridge_token
from tests.support.processes import ServiceProcess
from tests.support.stack import LocalStack, service_env

SESSION_SECRET = "test-only-sse-session-secret-of-at-least-32-bytes"
ORIGIN = "https://app.acme.test"
FOREIGN_ORIGIN = "https://evil.example"


def gateway_env(stack: LocalStack, prefix: str, database: str, **extra: str) -> dict[str, str]:
    """service_env plus the gateway's session secret and settings that make tests quick."""
    return service_env(
        stack,
        prefix,
        database,
        AFORO_SSE_GATEWAY_SESSION_SECRET=SESSION_SECRET,
        AFORO_SSE_GATEWAY_HEARTBEAT_SECONDS="1",
        AFORO_SSE_GATEWAY_SESSION_SWEEP_SECONDS="1",
        AFORO_SSE_GATEWAY_EMBED_KEY_CACHE_SECONDS="0",
        **extra,
    )


@dataclass(frozen=True)
class EmbedTenant:
    """A tenant's embed key and its ACTIVE auth-bridge signing key, as the API would have stored them."""

    tenant_id: str
    embed_key_id: str
    kid: str
    secret: str = field(repr=False)
    allowed_origins: tuple[str, ...]

    def bridge_token(self, customer_id: str, ttl_seconds: int = 120) -> str:
        return mint_bridge_token(
            kid=self.kid,
            secret=self.secret,
            tenant_id=self.tenant_id,
            customer_id=customer_id,
            ttl_seconds=ttl_seconds,
        )


async def seed_tenant(
    mongo: MongoStore, secret_box: SecretBox, tenant_id: str, origins: tuple[str, ...] = (ORIGIN,)
) -> EmbedTenant:
    now = datetime.now(UTC)
    tenant = EmbedTenant(tenant_id, new_embed_key_id(), new_signing_key_id(), new_signing_secret(), origins)
    await mongo.collection(EMBED_KEYS.collection).insert_one(
        EmbedKeyDocument(
            tenant_id=tenant_id,
            key_id=tenant.embed_key_id,
            allowed_domains=list(origins),
            status=EmbedKeyStatus.ACTIVE,
            created_at=now,
            updated_at=now,
        ).to_document()
    )
    await mongo.collection(BRIDGE_SIGNING_KEYS.collection).insert_one(
        SigningKeyDocument(
            tenant_id=tenant_id,
            kid=tenant.kid,
            status=SigningKeyStatus.ACTIVE,
            secret_ciphertext=secret_box.encrypt(tenant.secret),
            created_at=now,
            promoted_at=now,
        ).to_document()
    )
    return tenant


def widget_envelope(
    event_id: str,
    tenant_id: str = "t1",
    customer_id: str = "c1",
    event_type: str = "aforo.invoice.created",
    **payload: Any,
) -> bytes:
    """A widget envelope exactly as the bridge publishes it to `<prefix>events.widget`."""
    return dumps_json(
        {
            "eventId": event_id,
            "eventType": event_type,
            "category": "Billing",
            "severity": "INFO",
            "tenantId": tenant_id,
            "customerId": customer_id,
            "occurredAt": format_utc(datetime.now(UTC)),
            "payload": {"tenantId": tenant_id, "customerId": customer_id, **payload},
        }
    )


async def exchange(
    session: aiohttp.ClientSession,
    gateway_url: str,
    tenant: EmbedTenant,
    customer_id: str,
    origin: str = ORIGIN,
) -> str:
    async with session.post(
        f"{gateway_url}/v1/embed/session",
        json={"bridgeToken": tenant.bridge_token(customer_id), "embedKey": tenant.embed_key_id},
        headers={"Origin": origin},
    ) as response:
        body = await response.json()
        assert response.status == 201, body
        token: str = body["sessionToken"]
        return token


@dataclass
class SseEvent:
    id: str | None
    event: str
    data: dict[str, Any]
    received_at: float


class SseStream:
    """A browser-like SSE reader: every event parsed, with its monotonic receipt time."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.events: list[SseEvent] = []
        self.ended = asyncio.Event()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        fields: dict[str, str] = {}
        try:
            async for raw in self.response.content:
                line = raw.decode().rstrip("\r\n")
                if not line:
                    if "data" in fields:
                        self.events.append(
                            SseEvent(
                                fields.get("id"),
                                fields.get("event", "message"),
                                loads_json(fields["data"]),
                                time.monotonic(),
                            )
                        )
                    fields = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(":")
                    fields[name] = value.removeprefix(" ")
        except (aiohttp.ClientError, ConnectionError):
            pass  # the server cut the stream: `ended` says so
        finally:
            self.ended.set()

    @property
    def ids(self) -> list[str | None]:
        return [event.id for event in self.events]

    async def until(self, count: int, timeout: float = 10.0) -> list[SseEvent]:
        deadline = time.monotonic() + timeout
        while len(self.events) < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(self.events)} of {count} events after {timeout} s: {self.ids[-5:]}"
                )
            if self.ended.is_set():
                raise AssertionError(
                    f"the stream ended after {len(self.events)} of {count} events: {self.ids}"
                )
            await asyncio.sleep(0.02)
        return self.events

    async def wait_ended(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self.ended.wait(), timeout)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self.response.close()


@contextlib.asynccontextmanager
async def open_stream(
    session: aiohttp.ClientSession,
    gateway_url: str,
    token: str,
    *,
    origin: str = ORIGIN,
    last_event_id: str | None = None,
) -> AsyncIterator[SseStream]:
    headers = {"Origin": origin, "Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    response = await session.get(
        f"{gateway_url}/v1/embed/stream",
        params={"access_token": token},
        headers=headers,
        timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
    )
    assert response.status == 200, await response.text()
    stream = SseStream(response)
    try:
        yield stream
    finally:
        await stream.close()


def process_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


@dataclass
class GatewayUnderTest:
    stack: LocalStack
    prefix: str
    database: str
    env: dict[str, str]
    mongo: MongoStore
    log_dir: Path
    processes: list[ServiceProcess] = field(default_factory=list)

    @property
    def secret_box(self) -> SecretBox:
        return SecretBox.from_setting(self.env["AFORO_SECRETS_ENCRYPTION_KEYS"])

    @property
    def widget_topic(self) -> str:
        return f"{self.prefix}events.widget"

    async def start_gateway(self, port: int | None = None, **extra: str) -> ServiceProcess:
        process = ServiceProcess(
            "aforo.sse_gateway", "AFORO_SSE_GATEWAY_", {**self.env, **extra}, self.log_dir
        )
        if port is not None:  # a restart on the same address, as behind a fixed load balancer entry
            process.port = port
            process.env["AFORO_SSE_GATEWAY_HTTP_PORT"] = str(port)
        process.start()
        self.processes.append(process)
        await process.wait_ready(timeout=60)
        return process

    async def seed(self, tenant_id: str, origins: tuple[str, ...] = (ORIGIN,)) -> EmbedTenant:
        return await seed_tenant(self.mongo, self.secret_box, tenant_id, origins)

    async def stop(self) -> None:
        for process in self.processes:
            if process.process is not None and process.process.poll() is None:
                await asyncio.to_thread(process.terminate, 30)
        await self.mongo.client.drop_database(self.database)
        await self.mongo.close()


@contextlib.asynccontextmanager
async def gateway_under_test(
    stack: LocalStack, log_dir: Path, prefix: str, **extra: str
) -> AsyncIterator[GatewayUnderTest]:
    database = f"sse_{uuid.uuid4().hex[:8]}"
    env = gateway_env(stack, prefix, database, **extra)
    mongo = MongoStore(stack.mongo_uri, database, app_name="aforo-sse-test")
    await mongo.start()
    under_test = GatewayUnderTest(stack, prefix, database, env, mongo, log_dir)
    try:
        yield under_test
    finally:
        await under_test.stop()
