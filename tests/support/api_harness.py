"""The API under test: one real `python -m aforo.api` process per test module, on the session's Kafka
broker and SecantusDB, with its own topic prefix and database. No tests here; the `test_api*`
modules import `ApiUnderTest` and `start_api`.

Every response the harness receives is kept (`ApiUnderTest.replies`), so a module can scan all of them,
and the process log, for what must never leave the API (webhook secrets).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from aforo.api.auth import AuthConfig
from aforo.api.dev_tokens import mint_dev_token
from aforo.shared.kafka import TopicNames
from aforo.shared.mongo import MongoStore
from aforo.shared.secret_box import SecretBox, generate_key
from aforo.shared.serde import loads_json
from tests.support.kafka import TopicReader
from tests.support.processes import ServiceProcess
from tests.support.stack import TEST_JWT_SECRET, LocalStack, service_env

JWT_SECRET = TEST_JWT_SECRET


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return loads_json(self.body)

    @property
    def error(self) -> dict[str, Any]:
        """The `{"error": {...}}` object of an error reply."""
        body = self.json()
        assert set(body) == {"error"}, body
        error: dict[str, Any] = body["error"]
        return error


@dataclass
class ApiUnderTest:
    stack: LocalStack
    process: ServiceProcess
    prefix: str
    database: str
    encryption_key: str
    session: aiohttp.ClientSession
    mongo: MongoStore
    replies: list[Reply] = field(default_factory=list)
    auth: AuthConfig = field(default_factory=lambda: AuthConfig(mode="hs256", hs256_secret=JWT_SECRET))

    @property
    def topics(self) -> TopicNames:
        return TopicNames(self.prefix)

    @property
    def secret_box(self) -> SecretBox:
        return SecretBox([self.encryption_key])

    def token(self, tenant: str, roles: Sequence[str] = ("ADMIN",), customer: str | None = None) -> str:
        return mint_dev_token(self.auth, tenant_id=tenant, roles=list(roles), customer_id=customer)

    def headers(
        self, tenant: str, roles: Sequence[str] = ("ADMIN",), customer: str | None = None
    ) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(tenant, roles, customer)}", "X-Tenant-Id": tenant}

    async def call(
        self,
        method: str,
        path: str,
        *,
        tenant: str = "t1",
        roles: Sequence[str] = ("ADMIN",),
        customer: str | None = None,
        json: Any = None,
        data: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """One request with a freshly minted token (override any header with `headers`)."""
        sent_headers = self.headers(tenant, roles, customer)
        sent_headers.update(headers or {})
        if json is not None or data is not None:  # a body is JSON unless a test says otherwise
            sent_headers.setdefault("Content-Type", "application/json")
        async with self.session.request(
            method, f"{self.process.url}{path}", json=json, data=data, params=params, headers=sent_headers
        ) as response:
            reply = Reply(response.status, dict(response.headers), await response.read())
        self.replies.append(reply)
        return reply

    async def portal(
        self, method: str, path: str, *, tenant: str = "t1", customer: str = "c1", **kwargs: Any
    ) -> Reply:
        return await self.call(method, path, tenant=tenant, roles=("CUSTOMER",), customer=customer, **kwargs)

    def reader(self, topic: str) -> TopicReader:
        return TopicReader(self.stack.kafka_bootstrap, topic)


def api_env(stack: LocalStack, prefix: str, database: str, encryption_key: str) -> dict[str, str]:
    """The suite's service env, with a known encryption key and small limits the tests run into."""
    return service_env(
        stack,
        prefix,
        database,
        AFORO_SECRETS_ENCRYPTION_KEYS=encryption_key,
        AFORO_API_MAX_REQUEST_BODY_BYTES=str(64 * 1024),
        AFORO_API_SECRET_ROTATION_OVERLAP_SECONDS="3600",
    )


@asynccontextmanager
async def start_api(
    stack: LocalStack, log_dir: Path, extra_env: Mapping[str, str] | None = None
) -> AsyncIterator[ApiUnderTest]:
    """Start the API, yield it ready, then SIGTERM it: it must exit 0 having logged its stop."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    database = f"api_{uuid.uuid4().hex[:8]}"
    key = generate_key()
    env = {**api_env(stack, prefix, database, key), **(extra_env or {})}
    process = ServiceProcess("aforo.api", "AFORO_API_", env, log_dir).start()
    mongo = MongoStore(stack.mongo_uri, database, app_name="api-test")
    await mongo.start()
    try:
        await process.wait_ready(timeout=60)
        async with aiohttp.ClientSession() as session:
            yield ApiUnderTest(stack, process, prefix, database, key, session, mongo)
    finally:
        code = await asyncio.to_thread(process.terminate, 30)
        await mongo.client.drop_database(database)
        await mongo.close()
    assert code == 0, process.log_text()[-4000:]
    assert "service_stopped" in process.log_text()
