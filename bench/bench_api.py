"""The API's list and register routes at a fixed request rate, next to a bare aiohttp handler doing the
same I/O in the same run.

Both servers are processes of their own, on the same MongoDB database and broker, measured one after
the other with the same open-loop load: requests are sent on a fixed schedule (`--rate` per second)
whatever the answers do, and each latency counts from the request's scheduled time, so a slow phase
cannot hide its queueing (no coordinated omission).

- list: `GET /api/v1/webhook-endpoints?endCustomerId=...` for a customer with 10 endpoints. The
  baseline runs the same `find` (tenant, customer, projection, sort) and writes the rows as JSON.
- register: `POST /api/v1/webhook-endpoints`. The baseline inserts the same document and publishes a
  record of the same size to the broker, awaiting its ack, as the API does with its config change.

What the API adds on top is its own work: JWT verification, the tenant and role checks, strict body
validation, URL checks, secret encryption, response models. The verdict compares medians:
ratio = baseline p50 / API p50 for the worse of the two routes. Target: at least 0.50.

    python -m bench.bench_api [--rate R] [--seconds S] [--rounds N] [--strict]

Uses the stack named by AFORO_TEST_KAFKA_BOOTSTRAP/AFORO_TEST_MONGO_URI (`python -m bench.run` sets them),
else starts a private one.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web
from aiokafka import AIOKafkaProducer
from tests.support.processes import ServiceProcess
from tests.support.stack import ROOT, LocalStack

from aforo.api.auth import AuthConfig
from aforo.api.dev_tokens import mint_dev_token
from aforo.shared.envelope import format_utc
from aforo.shared.mongo import MongoStore
from aforo.shared.secret_box import generate_key
from aforo.shared.serde import dumps_json, loads_json
from bench.common import BaselineServer, bench_stack, percentile, stop_on_signals, summary

NAME = "api"
TARGET_RATIO = 0.50
DEFAULT_RATE = 100
DEFAULT_SECONDS = 8.0
DEFAULT_ROUNDS = 2
WARMUP_SECONDS = 1.0
TENANT = "bench-tenant"
LIST_CUSTOMER = "c-bench-list"
LISTED_ENDPOINTS = 10
JWT_SECRET = "bench-jwt-secret-0123456789abcdef-0123456789"
LOG_DIR = ROOT / ".local" / "bench-logs"
ENDPOINTS_PATH = "/api/v1/webhook-endpoints"


@dataclass(frozen=True)
class Latencies:
    side: str
    route: str
    milliseconds: list[float]
    seconds: float

    def percentile(self, fraction: float) -> float:
        return percentile(self.milliseconds, fraction)

    @property
    def p50(self) -> float:
        return self.percentile(0.50)

    @property
    def p99(self) -> float:
        return self.percentile(0.99)


# ---------------------------------------------------------------------------------------------
# The baseline: the same MongoDB query (and broker publish) in a bare aiohttp handler.


def baseline_app(mongo: MongoStore, producer: AIOKafkaProducer, topic: str) -> web.Application:
    endpoints = mongo.collection("webhook_endpoints")

    def wire(value: Any) -> Any:
        """Datetimes as the API writes them, at any depth (the secrets' dates are nested)."""
        if isinstance(value, datetime):
            return format_utc(value)
        if isinstance(value, dict):
            return {key: wire(item) for key, item in value.items()}
        if isinstance(value, list):
            return [wire(item) for item in value]
        return value

    async def list_endpoints(request: web.Request) -> web.Response:
        cursor = endpoints.find(
            {"tenantId": request.headers["X-Tenant-Id"], "endCustomerId": request.query["endCustomerId"]},
            {"_id": 0, "secrets.ciphertext": 0},
        ).sort([("createdAt", 1), ("endpointId", 1)])
        items = [wire(document) async for document in cursor]
        return web.Response(body=dumps_json({"items": items}), content_type="application/json")

    async def register(request: web.Request) -> web.Response:
        body = loads_json(await request.read())
        now = datetime.now(UTC)
        document = {
            "endpointId": str(uuid.uuid4()),
            "tenantId": request.headers["X-Tenant-Id"],
            "endCustomerId": body["endCustomerId"],
            "url": body["url"],
            "events": body["events"],
            "active": True,
            "secrets": [{"ciphertext": body["secret"], "createdAt": now, "retiresAt": None}],
            "maxRetryAttempts": 3,
            "initialBackoffSeconds": 2.0,
            "backoffMultiplier": 2.0,
            "version": 1,
            "createdAt": now,
            "updatedAt": now,
            "disabledReason": None,
        }
        await endpoints.insert_one(document)
        document.pop("_id", None)
        document.pop("secrets")
        await producer.send_and_wait(topic, dumps_json(wire(document)), key=document["endpointId"].encode())
        return web.Response(status=201, body=dumps_json(wire(document)), content_type="application/json")

    async def ready(_: web.Request) -> web.Response:
        return web.Response(text="ready")

    app = web.Application()
    app.router.add_get(ENDPOINTS_PATH, list_endpoints)
    app.router.add_post(ENDPOINTS_PATH, register)
    app.router.add_get("/readyz", ready)
    return app


async def baseline_serve(port: int, bootstrap: str, mongo_uri: str, database: str, topic: str) -> None:
    mongo = MongoStore(mongo_uri, database, app_name="aforo-bench-baseline")
    await mongo.start()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
    await producer.start()
    runner = web.AppRunner(baseline_app(mongo, producer, topic), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        await stop_on_signals().wait()
    finally:
        await runner.cleanup()
        await producer.stop()
        await mongo.close()


def baseline_worker(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_api baseline-worker")
    for option in ("--port", "--bootstrap", "--mongo-uri", "--database", "--topic"):
        parser.add_argument(option, required=True)
    args = parser.parse_args(argv)
    asyncio.run(baseline_serve(int(args.port), args.bootstrap, args.mongo_uri, args.database, args.topic))
    return 0


def baseline_process(stack: LocalStack, database: str, topic: str) -> BaselineServer:
    """The bare aiohttp handler doing the same MongoDB query (and publish), in its own process."""
    arguments = ("--bootstrap", stack.kafka_bootstrap, "--mongo-uri", stack.mongo_uri)
    return BaselineServer(
        "bench.bench_api", "api", LOG_DIR, (*arguments, "--database", database, "--topic", topic)
    )


# ---------------------------------------------------------------------------------------------
# The load: a fixed schedule, latency from the scheduled time.


async def open_loop(
    send: Callable[[int], Awaitable[int]], rate: float, seconds: float
) -> tuple[list[float], float]:
    """Call `send(i)` at `rate` per second for `seconds`; (latencies in ms after the warm-up, elapsed)."""
    count = int(rate * seconds)
    warmup = int(rate * WARMUP_SECONDS)
    latencies: list[float] = [0.0] * count
    failures: list[int] = []
    began = time.perf_counter()

    async def one(index: int, scheduled: float) -> None:
        status = await send(index)
        latencies[index] = (time.perf_counter() - scheduled) * 1000
        if status >= 300:
            failures.append(status)

    tasks = []
    for index in range(count):
        scheduled = began + index / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(index, scheduled)))
    await asyncio.gather(*tasks)
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed, e.g. status {failures[0]}")
    return latencies[warmup:], time.perf_counter() - began


async def measure(
    session: aiohttp.ClientSession,
    side: str,
    base_url: str,
    headers: dict[str, str],
    rate: float,
    seconds: float,
) -> list[Latencies]:
    async def list_call(_: int) -> int:
        async with session.get(
            f"{base_url}{ENDPOINTS_PATH}", params={"endCustomerId": LIST_CUSTOMER}, headers=headers
        ) as response:
            await response.read()
            return response.status

    run_id = uuid.uuid4().hex[:8]

    async def register_call(index: int) -> int:
        body = {
            "endCustomerId": f"c-bench-register-{index % 50}",
            "url": f"https://bench.example.com/{run_id}/{index}",
            "events": ["*"],
            "secret": f"whsec_bench_{uuid.uuid4().hex}",
        }
        async with session.post(f"{base_url}{ENDPOINTS_PATH}", json=body, headers=headers) as response:
            await response.read()
            return response.status

    results = []
    for route, send in (("list", list_call), ("register", register_call)):
        latencies, elapsed = await open_loop(send, rate, seconds)
        results.append(Latencies(side, route, latencies, elapsed))
    return results


async def seed(session: aiohttp.ClientSession, api_url: str, headers: dict[str, str]) -> None:
    """The listed customer's endpoints, registered through the API (both sides read the same rows)."""
    for index in range(LISTED_ENDPOINTS):
        body = {
            "endCustomerId": LIST_CUSTOMER,
            "url": f"https://listed.example.com/{index}",
            "events": ["INVOICE_GENERATED", "PAYMENT_OVERDUE"],
            "secret": f"whsec_bench_{uuid.uuid4().hex}",
        }
        async with session.post(f"{api_url}{ENDPOINTS_PATH}", json=body, headers=headers) as response:
            if response.status != 201:
                raise RuntimeError(f"seeding failed: {response.status} {await response.text()}")


async def bench(
    stack: LocalStack, rate: float, seconds: float, rounds: int
) -> dict[str, tuple[Latencies, Latencies]]:
    """{route: (best API run, best baseline run)}, alternating the sides `rounds` times."""
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    database = f"bench_api_{uuid.uuid4().hex[:8]}"
    env = {
        "AFORO_KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap,
        "AFORO_MONGO_URI": stack.mongo_uri,
        "AFORO_MONGO_DATABASE": database,
        "AFORO_TOPIC_PREFIX": prefix,
        "AFORO_API_AUTH_MODE": "hs256",
        "AFORO_API_JWT_HS256_SECRET": JWT_SECRET,
        "AFORO_SECRETS_ENCRYPTION_KEYS": generate_key(),
        "AFORO_LOG_LEVEL": "WARNING",
        "AFORO_SHUTDOWN_GRACE_SECONDS": "10",
    }
    api = ServiceProcess("aforo.api", "AFORO_API_", env, LOG_DIR).start()
    baseline = baseline_process(stack, database, f"{prefix}config.changes")
    token = mint_dev_token(
        AuthConfig(mode="hs256", hs256_secret=JWT_SECRET), tenant_id=TENANT, roles=["ADMIN"]
    )
    headers = {"Authorization": f"Bearer {token}", "X-Tenant-Id": TENANT}
    best: dict[tuple[str, str], Latencies] = {}
    try:
        await api.wait_ready()
        await baseline.wait_ready()
        connector = aiohttp.TCPConnector(limit=200)
        async with aiohttp.ClientSession(connector=connector) as session:
            await seed(session, api.url, headers)
            for round_number in range(1, rounds + 1):
                for side, url in (("baseline", baseline.url), ("api", api.url)):
                    for result in await measure(session, side, url, headers, rate, seconds):
                        print(
                            f"{NAME}: round {round_number} {side:8} {result.route:8} p50 {result.p50:6.2f} ms  "
                            f"p99 {result.p99:6.2f} ms  ({len(result.milliseconds)} requests at {rate:g}/s)",
                            flush=True,
                        )
                        key = (side, result.route)
                        if key not in best or result.p50 < best[key].p50:
                            best[key] = result
    finally:
        api_code = await asyncio.to_thread(api.terminate, 30)
        baseline.terminate()
        cleanup = MongoStore(stack.mongo_uri, database, app_name="aforo-bench")
        await cleanup.start()
        await cleanup.client.drop_database(database)
        await cleanup.close()
    if api_code != 0:
        raise RuntimeError(f"the API exited with {api_code}; see {api.log_path}")
    return {route: (best[("api", route)], best[("baseline", route)]) for route in ("list", "register")}


def main(argv: list[str]) -> int:
    if argv[:1] == ["baseline-worker"]:
        return baseline_worker(argv[1:])
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE, help="requests per second per route")
    parser.add_argument(
        "--seconds", type=float, default=DEFAULT_SECONDS, help="per route and side, warm-up included"
    )
    parser.add_argument(
        "--rounds", type=int, default=DEFAULT_ROUNDS, help="baseline/API pairs; best p50 counts"
    )
    parser.add_argument("--profile", action="store_true", help="accepted for run.py; no profile run here")
    parser.add_argument("--strict", action="store_true", help="exit 1 when the target is missed")
    args = parser.parse_args(argv)

    with bench_stack() as stack:
        results = asyncio.run(bench(stack, args.rate, args.seconds, args.rounds))
    ratios = {}
    for route, (api, baseline) in results.items():
        ratios[route] = baseline.p50 / api.p50 if api.p50 > 0 else 0.0
        print(
            f"{NAME}: {route:8} api p50 {api.p50:.2f} ms p99 {api.p99:.2f} ms | "
            f"baseline p50 {baseline.p50:.2f} ms p99 {baseline.p99:.2f} ms | baseline/api {ratios[route]:.2f}",
            flush=True,
        )
    worst_route = min(ratios, key=lambda route: ratios[route])
    ratio = ratios[worst_route]
    met = ratio >= TARGET_RATIO
    api_list, baseline_list = results["list"]
    api_register, baseline_register = results["register"]
    return summary(
        f"{NAME}: list p50 {api_list.p50:.2f} ms (baseline {baseline_list.p50:.2f})  "
        f"register p50 {api_register.p50:.2f} ms (baseline {baseline_register.p50:.2f})  "
        f"at {args.rate:g}/s  ratio: {ratio:.2f} ({worst_route})  target >= {TARGET_RATIO:.2f}  "
        f"{'PASS' if met else 'FAIL'}",
        met,
        args.strict,
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
