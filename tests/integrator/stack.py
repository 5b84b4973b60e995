"""The whole product as an integrator meets it: API, bridge, trigger, dispatcher and the harness, each a
real process on the session's Kafka broker and SecantusDB. Used by the integrator and browser tests.

The harness is driven through its own HTTP routes (what its page calls), so these tests see what the
page shows; the API is called directly only where a test plays the integrator's own code.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from aforo.api.auth import AuthConfig
from aforo.shared.serde import loads_json
from tests.support.api_harness import JWT_SECRET, ApiUnderTest, start_api
from tests.support.kafka import create_topics
from tests.support.processes import ServiceProcess
from tests.support.stack import LocalStack, service_env

ISSUER = "aforo-local-test"
SOURCE_TOPIC = "billing.invoice.finalized"
# The dispatcher's attempt timeout is 5 s; a scripted slow answer takes longer than that.
SLOW_ANSWER_SECONDS = 6.5
T = TypeVar("T")


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any


@dataclass
class IntegratorStack:
    api: ApiUnderTest
    harness: ServiceProcess
    processes: list[ServiceProcess]
    http: aiohttp.ClientSession

    @property
    def harness_url(self) -> str:
        return self.harness.url

    def auth(self, tenant: str = "t1") -> dict[str, str]:
        return self.api.headers(tenant)

    async def harness_call(
        self, method: str, path: str, *, json: Any = None, tenant: str | None = "t1", params: Any = None
    ) -> Answer:
        """A harness route as the page calls it (with the admin token of `tenant`)."""
        headers = self.auth(tenant) if tenant else {}
        async with self.http.request(
            method, f"{self.harness.url}{path}", json=json, headers=headers, params=params
        ) as response:
            raw = await response.read()
            body = loads_json(raw) if raw and response.content_type == "application/json" else raw
            return Answer(response.status, dict(response.headers), body)

    async def inbox(self) -> list[dict[str, Any]]:
        answer = await self.harness_call("GET", "/harness/inbox", tenant=None)
        items: list[dict[str, Any]] = answer.body["items"]
        return items

    async def register(self, customer: str, events: list[str] | None = None, **policy: Any) -> str:
        """Register the harness's receiver for `customer` and wait until a probe reaches it."""
        answer = await self.harness_call(
            "POST",
            "/harness/webhook/register",
            json={"endCustomerId": customer, "events": events or ["*"], **policy},
        )
        assert answer.status == 201, answer.body
        endpoint_id: str = answer.body["endpointId"]
        await self.wait_live(endpoint_id)
        return endpoint_id

    async def register_with_secret(self, customer: str, secret: str) -> str:
        """Register a receiver path of the harness with a secret the test holds (the integrator's own)."""
        answer = await self.api.call(
            "POST",
            "/api/v1/webhook-endpoints",
            json={
                "endCustomerId": customer,
                "url": f"{self.harness.url}/receiver/{customer}",
                "events": ["*"],
                "secret": secret,
                "maxRetryAttempts": 1,
            },
        )
        assert answer.status == 201, answer.body
        endpoint_id: str = answer.json()["endpointId"]
        await self.wait_live(endpoint_id)
        return endpoint_id

    async def probe(self, endpoint_id: str) -> str:
        answer = await self.harness_call("POST", f"/harness/api/api/v1/webhook-endpoints/{endpoint_id}/test")
        assert answer.status == 202, answer.body
        return answer.headers["X-Aforo-Event-Id"]

    async def wait_live(self, endpoint_id: str, timeout: float = 60.0) -> None:
        """Probe until one arrives: the dispatcher takes up a new endpoint within its cache bound."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            event_id = await self.probe(endpoint_id)
            try:
                await self.wait_delivery(lambda d, e=event_id: d["eventId"] == e, timeout=3)
                return
            except AssertionError:
                continue
        raise AssertionError(f"no probe reached the harness for {endpoint_id} in {timeout} s")

    async def wait_delivery(
        self, matches: Callable[[dict[str, Any]], bool], count: int = 1, timeout: float = 30.0
    ) -> list[dict[str, Any]]:
        async def found() -> list[dict[str, Any]] | None:
            hits = [delivery for delivery in await self.inbox() if matches(delivery)]
            return hits if len(hits) >= count else None

        return await eventually(found, timeout, f"{count} matching deliveries in the harness inbox")

    async def audit(self, customer: str, **filters: str) -> list[dict[str, Any]]:
        answer = await self.harness_call(
            "GET", "/harness/audit", params={"endCustomerId": customer, "limit": "200", **filters}
        )
        assert answer.status == 200, answer.body
        rows: list[dict[str, Any]] = answer.body["items"]
        return rows

    async def wait_rows(
        self, customer: str, matches: Callable[[dict[str, Any]], bool], count: int = 1, timeout: float = 40.0
    ) -> list[dict[str, Any]]:
        async def found() -> list[dict[str, Any]] | None:
            hits = [row for row in await self.audit(customer) if matches(row)]
            return hits if len(hits) >= count else None

        return await eventually(found, timeout, f"{count} matching delivery-log rows for {customer}")

    async def emit(self, event_type: str, customer: str, payload: dict[str, Any]) -> str:
        answer = await self.harness_call(
            "POST",
            f"/harness/api/api/v1/notification-event-definitions/{event_type}/emit",
            json={"customerId": customer, "payload": payload},
        )
        assert answer.status == 202, answer.body
        return answer.headers["X-Aforo-Event-Id"]

    async def define(self, event_type: str, **fields: Any) -> None:
        answer = await self.harness_call(
            "POST",
            "/harness/api/api/v1/admin/event-definitions",
            json={
                "eventType": event_type,
                "displayName": event_type.title(),
                "category": "Custom",
                "severity": "INFO",
                "defaultChannels": ["WEBHOOK"],
                **fields,
            },
        )
        assert answer.status == 201, answer.body


async def eventually(check: Callable[[], Awaitable[T | None]], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not there after {timeout} s")
        await asyncio.sleep(0.2)


@asynccontextmanager
async def integrator_stack(local_stack: LocalStack, log_dir: Path) -> AsyncIterator[IntegratorStack]:
    """API, bridge, trigger, dispatcher and harness on their own topics and database; all stopped after."""
    processes: list[ServiceProcess] = []
    async with start_api(local_stack, log_dir, {"AFORO_API_JWT_ISSUER": ISSUER}) as api:
        env = service_env(
            local_stack,
            api.prefix,
            api.database,
            AFORO_SECRETS_ENCRYPTION_KEYS=api.encryption_key,
            AFORO_API_JWT_ISSUER=ISSUER,
            AFORO_BRIDGE_SOURCE_TOPIC_PREFIX=api.prefix,
            AFORO_BRIDGE_METADATA_MAX_AGE_MS="1000",
            AFORO_HARNESS_API_URL=api.process.url,
            AFORO_HARNESS_SOURCE_TOPIC_PREFIX=api.prefix,
            AFORO_HARNESS_SLOW_ANSWER_SECONDS=str(SLOW_ANSWER_SECONDS),
        )
        await create_topics(local_stack.kafka_bootstrap, [f"{api.prefix}{SOURCE_TOPIC}"])
        try:
            processes = [
                ServiceProcess(module, env_prefix, env, log_dir).start()
                for module, env_prefix in (
                    ("aforo.bridge", "AFORO_BRIDGE_"),
                    ("aforo.trigger", "AFORO_TRIGGER_"),
                    ("aforo.dispatcher", "AFORO_DISPATCHER_"),
                    ("aforo.harness", "AFORO_HARNESS_"),
                )
            ]
            await asyncio.gather(*(process.wait_ready(timeout=120) for process in processes))
            # Tokens the tests mint must carry the issuer this stack's API requires.
            api.auth = AuthConfig(mode="hs256", hs256_secret=JWT_SECRET, issuer=ISSUER)
            async with aiohttp.ClientSession() as http:
                yield IntegratorStack(api, processes[-1], processes, http)
        finally:
            codes = [await asyncio.to_thread(process.terminate, 30) for process in processes]
    assert codes == [0] * len(processes), [process.log_text()[-2000:] for process in processes]
