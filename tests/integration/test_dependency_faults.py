"""The API and the SSE gateway, as real processes, while MongoDB and then Kafka go away and come back.

They run on a private Kafka broker and SecantusDB (started here, through deploy/local/stack.sh, in
their own directory and ports) so that killing them disturbs no other test. While a dependency is
gone: requests that need it answer 503 with the JSON error naming it and `Retry-After` (never a 500),
`/readyz` is 503 and names the failing check, `/healthz` stays 200 (no restart needed). When it is
back both recover by themselves: the same requests succeed again and `/readyz` is 200.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from aforo.api.auth import AuthConfig
from aforo.api.dev_tokens import mint_dev_token
from aforo.shared.serde import dumps_json
from aforo.sse_gateway.integrator_tokens import mint_bridge_token
from tests.support.processes import ServiceProcess
from tests.support.stack import ROOT, STACK_SCRIPT, TEST_JWT_SECRET, LocalStack, free_port, service_env

TENANT = "t-faults"
DEADLINE_SECONDS = 120.0  # a loaded machine: the JVM restarts slowly


@dataclass
class PrivateStack:
    """Kafka + SecantusDB of this module alone; each can be stopped and started again on its ports."""

    directory: Path
    env: dict[str, str]
    stack: LocalStack

    def run(self, command: str) -> None:
        subprocess.run([str(STACK_SCRIPT), command], env=self.env, check=True, timeout=240)

    def signal(self, name: str, sig: signal.Signals) -> None:
        """Signal the process group stack.sh started `name` in (setsid), and wait for it to end."""
        pidfile = self.directory / "run" / f"{name}.pid"
        pid = int(pidfile.read_text())
        os.killpg(pid, sig)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            os.killpg(pid, signal.SIGKILL)
        pidfile.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def private_stack() -> Iterator[PrivateStack]:
    directory = ROOT / ".local" / f"test-faults-{uuid.uuid4().hex[:8]}"
    kafka_port, controller_port, mongo_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "AFORO_LOCAL_DIR": str(directory),
        "AFORO_KAFKA_PORT": str(kafka_port),
        "AFORO_KAFKA_CONTROLLER_PORT": str(controller_port),
        "AFORO_MONGO_PORT": str(mongo_port),
        "AFORO_KAFKA_HEAP": "384m",
    }
    stack = LocalStack(f"127.0.0.1:{kafka_port}", f"mongodb://127.0.0.1:{mongo_port}/?retryWrites=false")
    private = PrivateStack(directory, env, stack)
    try:
        private.run("start-kafka")
        private.run("start-mongo")
        yield private
    finally:
        subprocess.run([str(STACK_SCRIPT), "down"], env=env, check=False, timeout=120)
        shutil.rmtree(directory, ignore_errors=True)


@dataclass
class Services:
    api: ServiceProcess
    gateway: ServiceProcess
    session: aiohttp.ClientSession

    def api_headers(self) -> dict[str, str]:
        token = mint_dev_token(
            AuthConfig(mode="hs256", hs256_secret=TEST_JWT_SECRET), tenant_id=TENANT, roles=["ADMIN"]
        )
        return {"Authorization": f"Bearer {token}", "X-Tenant-Id": TENANT, "Content-Type": "application/json"}

    async def request(self, method: str, url: str, **kwargs: Any) -> tuple[int, dict[str, str], Any]:
        timeout = aiohttp.ClientTimeout(total=60)
        async with self.session.request(method, url, timeout=timeout, **kwargs) as response:
            raw = await response.read()
            body = await response.json(content_type=None) if raw else None
            return response.status, dict(response.headers), body

    async def define(self) -> tuple[int, dict[str, str], Any]:
        """The CUSTOM type `emit` sends (201, or 409 when it exists already)."""
        return await self.request(
            "POST",
            f"{self.api.url}/api/v1/admin/event-definitions",
            headers=self.api_headers(),
            data=dumps_json(
                {
                    "eventType": "FAULTS",
                    "displayName": "Faults",
                    "category": "Custom",
                    "severity": "INFO",
                    "defaultChannels": ["WEBHOOK"],
                }
            ),
        )

    async def list_definitions(self) -> tuple[int, dict[str, str], Any]:
        return await self.request(
            "GET", f"{self.api.url}/api/v1/admin/event-definitions", headers=self.api_headers()
        )

    async def emit(self) -> tuple[int, dict[str, str], Any]:
        return await self.request(
            "POST",
            f"{self.api.url}/api/v1/notification-event-definitions/FAULTS/emit",
            headers=self.api_headers(),
            data=dumps_json({"customerId": "c1", "payload": {"n": 1}}),
        )

    async def exchange(self) -> tuple[int, dict[str, str], Any]:
        """A session exchange naming an unknown key: it needs MongoDB to be refused (403/401)."""
        token = mint_bridge_token(
            kid=f"bsk_{uuid.uuid4().hex[:8]}", secret="x" * 40, tenant_id=TENANT, customer_id="c1"
        )
        return await self.request(
            "POST",
            f"{self.gateway.url}/v1/embed/session",
            headers={"Content-Type": "application/json", "Origin": "https://app.example"},
            data=dumps_json({"bridgeToken": token, "embedKey": "ek_nope"}),
        )

    async def ready(self, process: ServiceProcess) -> tuple[int, dict[str, bool]]:
        status, _, body = await self.request("GET", f"{process.url}/readyz")
        return status, body["checks"]

    async def alive(self, process: ServiceProcess) -> int:
        return (await self.request("GET", f"{process.url}/healthz"))[0]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def services(private_stack: PrivateStack, service_log_dir: Path) -> AsyncIterator[Services]:
    prefix = f"f{uuid.uuid4().hex[:10]}."
    env = service_env(
        private_stack.stack,
        prefix,
        f"faults_{uuid.uuid4().hex[:8]}",
        AFORO_API_PUBLISH_TIMEOUT_SECONDS="3",
        AFORO_READINESS_TIMEOUT_SECONDS="2",
    )
    api = ServiceProcess("aforo.api", "AFORO_API_", env, service_log_dir).start()
    gateway = ServiceProcess("aforo.sse_gateway", "AFORO_SSE_GATEWAY_", env, service_log_dir).start()
    try:
        await api.wait_ready(timeout=90)
        await gateway.wait_ready(timeout=90)
        async with aiohttp.ClientSession() as session:
            yield Services(api, gateway, session)
    finally:
        codes = [await asyncio.to_thread(process.terminate, 30) for process in (api, gateway)]
    assert codes == [0, 0], api.log_text()[-3000:] + gateway.log_text()[-3000:]
    for process in (api, gateway):
        assert "Traceback" not in process.log_text(), process.log_text()[-4000:]


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"not within {DEADLINE_SECONDS} s: {what}")


def assert_unavailable(reply: tuple[int, dict[str, str], Any], code: str) -> None:
    status, headers, body = reply
    assert status == 503, reply
    assert headers["Content-Type"].startswith("application/json")
    assert int(headers["Retry-After"]) >= 1
    assert body["error"]["code"] == code, body
    assert "Traceback" not in body["error"]["message"]


async def test_mongodb_down_is_503_naming_it_and_both_recover_by_themselves(
    services: Services, private_stack: PrivateStack
) -> None:
    assert (await services.define())[0] == 201
    assert (await services.exchange())[0] in (401, 403)

    await asyncio.to_thread(private_stack.signal, "mongodb", signal.SIGKILL)

    assert_unavailable(await services.list_definitions(), "mongodb_unavailable")
    assert_unavailable(await services.exchange(), "mongodb_unavailable")
    for process in (services.api, services.gateway):
        status, checks = await services.ready(process)
        assert status == 503
        assert (checks["mongodb"], checks["kafka"]) == (False, True)
        assert await services.alive(process) == 200

    await asyncio.to_thread(private_stack.run, "start-mongo")

    async def recovered() -> bool:
        return (await services.list_definitions())[0] == 200 and (await services.exchange())[0] in (401, 403)

    await eventually(recovered, "the API and the gateway answer again after MongoDB is back")
    for process in (services.api, services.gateway):
        await eventually(lambda p=process: _ready(services, p), f"{process.module} ready again")


async def _ready(services: Services, process: ServiceProcess) -> bool:
    return (await services.ready(process))[0] == 200


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
async def test_kafka_down_is_503_naming_it_and_both_recover_by_themselves(
    services: Services, private_stack: PrivateStack, stop_signal: signal.Signals
) -> None:
    await eventually(lambda: _ready(services, services.api), "api ready")
    assert (await services.define())[0] in (201, 409)
    assert (await services.emit())[0] == 202

    await asyncio.to_thread(private_stack.signal, "kafka", stop_signal)

    assert_unavailable(await services.emit(), "broker_unavailable")
    assert (await services.list_definitions())[0] == 200  # what needs only MongoDB still works
    for process in (services.api, services.gateway):

        async def kafka_check_fails(p: ServiceProcess = process) -> bool:
            status, checks = await services.ready(p)
            return status == 503 and checks.get("kafka") is False and checks.get("mongodb") is True

        await eventually(kafka_check_fails, f"{process.module} /readyz names kafka")
        assert await services.alive(process) == 200

    await asyncio.to_thread(private_stack.run, "start-kafka")

    async def emits_again() -> bool:
        return (await services.emit())[0] == 202

    await eventually(emits_again, "the API publishes again after Kafka is back")
    for process in (services.api, services.gateway):
        await eventually(lambda p=process: _ready(services, p), f"{process.module} ready again")
