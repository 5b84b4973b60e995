"""The SSE gateway holding 5,000 concurrent streams on one process, next to a bare aiohttp SSE server
fed the same way, in the same run.

Both servers are processes of their own, each reading its own widget topic with aiokafka (no group,
from the end, the same fetch wait), and both are measured with the same clients and the same load:

- **Gateway**: the real `python -m aforo.sse_gateway`. Every stream is a real embed session (session
  records seeded in MongoDB, session JWTs signed with the gateway's secret), so each connect pays the
  token check, the origin check and the session lookup; each event pays the envelope parse, the PII
  allowlist, the history and the fan-out into bounded queues.
- **Baseline**: a bare aiohttp handler per stream awaiting an `asyncio.Queue`, fed by a consumer that
  routes each record by its Kafka key and writes its value untouched (`bench_sse.py baseline-worker`).

Load: `--streams` clients (one per customer) connect through one aiohttp session; then `--rate`
widget envelopes per second for `--seconds` go to random customers on a fixed schedule (open loop:
latency counts from the scheduled send time, so a slow phase cannot hide its queueing). Figures:
produce-to-receipt p50/p99 (every event must arrive exactly once), and the server's memory per
connection (RSS with all streams open minus RSS before, divided by the streams). The clients' own
garbage collector is paused during the load, so its pauses land on neither side. The verdict is on
latency: ratio = baseline p99 / gateway p99, target at least 0.50; memory is reported next to it.

    python bench/bench_sse.py [--streams N] [--rate R] [--seconds S] [--strict]

Uses the stack named by AFORO_TEST_KAFKA_BOOTSTRAP/AFORO_TEST_MONGO_URI (`bench/run.py` sets them),
else starts a private one. Raises the file-descriptor limit itself (`resource.setrlimit`).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import resource
import signal
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from aiohttp import web
from aiokafka import TopicPartition

from aforo.shared.collections import EMBED_KEYS, EMBED_SESSIONS
from aforo.shared.embed import EmbedKeyDocument, EmbedKeyStatus, EmbedSessionDocument
from aforo.shared.envelope import format_utc
from aforo.shared.kafka import TopicSpec, create_consumer, create_producer, ensure_topics
from aforo.shared.mongo import MongoStore
from aforo.shared.secret_box import generate_key
from aforo.shared.serde import dumps_json
from aforo.shared.settings import ServiceSettings
from aforo.sse_gateway.embed_tokens import issue_session_token

ROOT = Path(__file__).resolve().parents[1]
# Run as `python bench/bench_sse.py` the repo root is not on sys.path; the stack helpers live there.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.processes import ServiceProcess  # noqa: E402
from tests.support.stack import LocalStack  # noqa: E402

from bench.common import BaselineServer, percentile  # noqa: E402

NAME = "sse"
TARGET_RATIO = 0.50
DEFAULT_STREAMS = 5_000
DEFAULT_RATE = 100.0
DEFAULT_SECONDS = 20.0
WARMUP_SECONDS = 2.0
CONNECT_CONCURRENCY = 100
FETCH_MAX_WAIT_MS = 100
ORIGIN = "http://bench.aforo.test"
SESSION_SECRET = "bench-only-sse-session-secret-of-at-least-32-bytes"
TENANT = "bench"
LOG_DIR = ROOT / ".local" / "bench-logs"


def raise_fd_limit(wanted: int) -> int:
    """Streams are sockets: raise the soft limit towards the hard one (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


# ---------------------------------------------------------------------------------------------
# The baseline: a bare aiohttp SSE server fed from Kafka through asyncio queues.


async def baseline_serve(port: int, bootstrap: str, topic: str) -> None:
    queues: dict[bytes, set[asyncio.Queue[bytes]]] = {}

    async def stream(request: web.Request) -> web.StreamResponse:
        key = f"{TENANT}:{request.query['customer']}".encode()
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        queues.setdefault(key, set()).add(queue)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        try:
            await response.prepare(request)
            while True:
                await response.write(await queue.get())
        except ConnectionError:
            pass
        finally:
            queues[key].discard(queue)
        return response

    async def readyz(_: web.Request) -> web.Response:
        return web.Response(text="ready")

    settings = ServiceSettings(kafka_bootstrap_servers=bootstrap)
    consumer = create_consumer(settings, group_id=None, fetch_max_wait_ms=FETCH_MAX_WAIT_MS)
    await consumer.start()
    cluster = await consumer._client.fetch_all_metadata()
    partitions = [
        TopicPartition(topic, number) for number in sorted(cluster.partitions_for_topic(topic) or ())
    ]
    consumer.assign(partitions)
    await consumer.seek_to_end(*partitions)

    async def feed() -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=200, max_records=1000)
            for records in batch.values():
                for record in records:
                    event_id = dict(record.headers or ()).get("eventId", b"")
                    frame = b"id: " + event_id + b"\nevent: message\ndata: " + record.value + b"\n\n"
                    for queue in queues.get(record.key, ()):
                        queue.put_nowait(frame)

    app = web.Application()
    app.add_routes([web.get("/stream", stream), web.get("/readyz", readyz)])
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
    feeder = asyncio.create_task(feed())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        feeder.cancel()
        await consumer.stop()
        await runner.shutdown()
        await runner.cleanup()


def baseline_worker(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench_sse.py baseline-worker")
    for option in ("--port", "--bootstrap", "--topic"):
        parser.add_argument(option, required=True)
    args = parser.parse_args(argv)
    asyncio.run(baseline_serve(int(args.port), args.bootstrap, args.topic))
    return 0


def baseline_process(bootstrap: str, topic: str) -> BaselineServer:
    """The bare aiohttp SSE handler broadcasting from an asyncio queue, in its own process."""
    arguments = ("--bootstrap", bootstrap, "--topic", topic)
    return BaselineServer(Path(__file__).resolve(), "sse", LOG_DIR, arguments)


# ---------------------------------------------------------------------------------------------
# Clients and load, the same for both sides.


@dataclass
class Side:
    name: str
    pid: int
    topic: str
    stream_url: Callable[[int], str]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Figures:
    p50_ms: float
    p99_ms: float
    max_ms: float
    bytes_per_connection: float
    connect_seconds: float


async def open_streams(
    session: aiohttp.ClientSession, side: Side, streams: int, receipts: dict[str, float]
) -> tuple[list[asyncio.Task[None]], float]:
    """Connect every client (at most CONNECT_CONCURRENCY at once); each records when ids arrive."""
    connected = 0
    all_connected = asyncio.Event()
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def client(index: int) -> None:
        nonlocal connected
        async with gate:
            response = await session.get(side.stream_url(index), headers=side.headers)
        if response.status != 200:
            raise RuntimeError(
                f"{side.name}: stream {index} answered {response.status}: {await response.text()}"
            )
        connected += 1
        if connected == streams:
            all_connected.set()
        try:
            async for line in response.content:
                if line.startswith(b"id: "):
                    receipts.setdefault(line[4:].strip().decode(), time.perf_counter())
        finally:
            response.close()

    began = time.monotonic()
    tasks = [asyncio.create_task(client(index)) for index in range(streams)]
    waiter = asyncio.create_task(all_connected.wait())
    await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED, timeout=180)
    if not all_connected.is_set():
        failed = [task for task in tasks if task.done() and task.exception() is not None]
        raise RuntimeError(f"{side.name}: {connected} of {streams} streams connected ({failed[:1]})")
    return tasks, time.monotonic() - began


async def run_load(bootstrap: str, topic: str, streams: int, rate: float, seconds: float) -> dict[str, float]:
    """Produce on a fixed schedule; the scheduled send time of each event id."""
    producer = create_producer(ServiceSettings(kafka_bootstrap_servers=bootstrap))
    await producer.start()
    scheduled: dict[str, float] = {}
    pending: list[Awaitable[object]] = []
    try:
        count = int(rate * seconds)
        began = time.perf_counter()
        for number in range(count):
            at = began + number / rate
            delay = at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            customer = f"c{random.randrange(streams)}"
            event_id = f"ev-{number}-{uuid.uuid4().hex[:8]}"
            envelope = dumps_json(
                {
                    "eventId": event_id,
                    "eventType": "aforo.invoice.created",
                    "category": "Billing",
                    "severity": "INFO",
                    "tenantId": TENANT,
                    "customerId": customer,
                    "occurredAt": format_utc(datetime.now(UTC)),
                    "payload": {
                        "tenantId": TENANT,
                        "customerId": customer,
                        "invoiceId": f"inv-{number}",
                        "amountDue": 12000 + number,
                        "currency": "EUR",
                        "dueDate": "2026-12-01",
                    },
                }
            )
            scheduled[event_id] = at
            pending.append(
                await producer.send(
                    topic,
                    value=envelope,
                    key=f"{TENANT}:{customer}".encode(),
                    headers=[("eventId", event_id.encode())],
                )
            )
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return scheduled


async def measure(side: Side, bootstrap: str, streams: int, rate: float, seconds: float) -> Figures:
    receipts: dict[str, float] = {}
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None, sock_connect=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.sleep(1.0)
        rss_before = rss_bytes(side.pid)
        tasks, connect_seconds = await open_streams(session, side, streams, receipts)
        await asyncio.sleep(2.0)  # let the server settle with every stream open
        rss_after = rss_bytes(side.pid)
        # The clients' own collector must not add its pauses to either side's latency: collect now,
        # set what exists aside, and collect nothing during the load (it allocates little).
        gc.collect()
        gc.freeze()
        gc.disable()
        try:
            scheduled = await run_load(bootstrap, side.topic, streams, rate, seconds)
            deadline = time.monotonic() + 30
            while len(receipts) < len(scheduled) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
        finally:
            gc.enable()
            gc.unfreeze()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    missing = set(scheduled) - set(receipts)
    if missing:
        raise RuntimeError(f"{side.name}: {len(missing)} of {len(scheduled)} events never arrived")
    warmup = int(rate * WARMUP_SECONDS)
    ordered = sorted(scheduled, key=scheduled.__getitem__)[warmup:]
    latencies = [(receipts[event_id] - scheduled[event_id]) * 1000 for event_id in ordered]
    return Figures(
        p50_ms=percentile(latencies, 0.50),
        p99_ms=percentile(latencies, 0.99),
        max_ms=max(latencies),
        bytes_per_connection=(rss_after - rss_before) / streams,
        connect_seconds=connect_seconds,
    )


# ---------------------------------------------------------------------------------------------
# The gateway side: embed key, sessions and tokens seeded as an exchange would have made them.


async def seed_sessions(mongo: MongoStore, streams: int) -> list[str]:
    now = datetime.now(UTC)
    key = EmbedKeyDocument(
        tenant_id=TENANT,
        key_id="ek_bench",
        allowed_domains=[ORIGIN],
        status=EmbedKeyStatus.ACTIVE,
        created_at=now,
        updated_at=now,
    )
    await mongo.collection(EMBED_KEYS.collection).insert_one(key.to_document())
    tokens: list[str] = []
    documents = []
    for index in range(streams):
        session_id = f"es_bench_{index}"
        token, expires_at = issue_session_token(
            tenant_id=TENANT,
            customer_id=f"c{index}",
            session_id=session_id,
            embed_key_id=key.key_id,
            secret=SESSION_SECRET,
            now=now,
            ttl=timedelta(hours=1),
        )
        tokens.append(token)
        documents.append(
            EmbedSessionDocument(
                tenant_id=TENANT,
                session_id=session_id,
                customer_id=f"c{index}",
                embed_key_id=key.key_id,
                signing_key_id="bsk_bench",
                origin=ORIGIN,
                created_at=now,
                expires_at=expires_at,
                ends_at=now + timedelta(hours=12),
                purge_at=now + timedelta(days=1),
            ).to_document()
        )
    await mongo.collection(EMBED_SESSIONS.collection).insert_many(documents)
    return tokens


async def bench(stack: LocalStack, streams: int, rate: float, seconds: float) -> tuple[Figures, Figures]:
    run = uuid.uuid4().hex[:8]
    baseline_topic = f"bench-sse-{run}.baseline.widget"
    gateway_prefix = f"bench-sse-{run}."
    await ensure_topics(
        stack.kafka_bootstrap, [TopicSpec(baseline_topic, 3), TopicSpec(f"{gateway_prefix}events.widget", 3)]
    )

    baseline = baseline_process(stack.kafka_bootstrap, baseline_topic)
    try:
        await baseline.wait_ready()
        print(f"{NAME}: baseline  connecting {streams} streams ...", flush=True)
        baseline_side = Side(
            "baseline",
            baseline.process.pid,
            baseline_topic,
            lambda index: f"{baseline.url}/stream?customer=c{index}",
        )
        baseline_figures = await measure(baseline_side, stack.kafka_bootstrap, streams, rate, seconds)
    finally:
        baseline.terminate()
    report("baseline", baseline_figures)

    database = f"bench_sse_{run}"
    mongo = MongoStore(stack.mongo_uri, database, app_name="bench-sse")
    await mongo.start([EMBED_KEYS, EMBED_SESSIONS])
    tokens = await seed_sessions(mongo, streams)
    gateway = ServiceProcess(
        "aforo.sse_gateway",
        "AFORO_SSE_GATEWAY_",
        {
            "AFORO_KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap,
            "AFORO_MONGO_URI": stack.mongo_uri,
            "AFORO_MONGO_DATABASE": database,
            "AFORO_TOPIC_PREFIX": gateway_prefix,
            "AFORO_SECRETS_ENCRYPTION_KEYS": generate_key(),
            "AFORO_SSE_GATEWAY_SESSION_SECRET": SESSION_SECRET,
            "AFORO_SSE_GATEWAY_CONSUMER_FETCH_MAX_WAIT_MS": str(FETCH_MAX_WAIT_MS),
            "AFORO_SSE_GATEWAY_MAX_CONNECTIONS": str(streams * 2),
            "AFORO_LOG_LEVEL": "WARNING",
        },
        LOG_DIR,
    ).start()
    try:
        await gateway.wait_ready()
        assert gateway.process is not None
        print(f"{NAME}: gateway   connecting {streams} streams ...", flush=True)
        gateway_side = Side(
            "gateway",
            gateway.process.pid,
            f"{gateway_prefix}events.widget",
            lambda index: f"{gateway.url}/v1/embed/stream?access_token={tokens[index]}",
            {"Origin": ORIGIN},
        )
        gateway_figures = await measure(gateway_side, stack.kafka_bootstrap, streams, rate, seconds)
    finally:
        await asyncio.to_thread(gateway.terminate, 60)
        await mongo.client.drop_database(database)
        await mongo.close()
    report("gateway", gateway_figures)
    return gateway_figures, baseline_figures


def report(name: str, figures: Figures) -> None:
    print(
        f"{NAME}: {name:9} p50 {figures.p50_ms:.1f} ms  p99 {figures.p99_ms:.1f} ms  max {figures.max_ms:.1f} ms  "
        f"{figures.bytes_per_connection / 1024:.1f} KiB/connection  connected in {figures.connect_seconds:.1f} s",
        flush=True,
    )


def main(argv: list[str]) -> int:
    if argv[:1] == ["baseline-worker"]:
        return baseline_worker(argv[1:])
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", type=int, default=DEFAULT_STREAMS, help="concurrent streams per side")
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE, help="events per second")
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help="load duration per side")
    parser.add_argument("--profile", action="store_true", help="accepted for run.py; no profile run here")
    parser.add_argument("--strict", action="store_true", help="exit 1 when the target is missed")
    args = parser.parse_args(argv)
    limit = raise_fd_limit(args.streams * 2 + 1024)
    if limit < args.streams + 512:
        print(f"{NAME}: the file-descriptor limit is {limit}; lower --streams", flush=True)
        return 2

    existing = LocalStack.from_environment()
    stack = existing or LocalStack.start()
    try:
        gateway, baseline = asyncio.run(bench(stack, args.streams, args.rate, args.seconds))
    finally:
        if existing is None:
            stack.stop()
    ratio = baseline.p99_ms / gateway.p99_ms if gateway.p99_ms > 0 else 0.0
    memory_ratio = (
        baseline.bytes_per_connection / gateway.bytes_per_connection
        if gateway.bytes_per_connection > 0
        else 0.0
    )
    verdict = "PASS" if ratio >= TARGET_RATIO else "FAIL"
    print(
        f"{NAME}: {args.streams} streams at {args.rate:g}/s  p99 {gateway.p99_ms:.1f} ms "
        f"(baseline {baseline.p99_ms:.1f})  {gateway.bytes_per_connection / 1024:.1f} KiB/conn "
        f"(baseline {baseline.bytes_per_connection / 1024:.1f}, memory baseline/gateway {memory_ratio:.2f})  "
        f"ratio: {ratio:.2f}  target >= {TARGET_RATIO:.2f}  {verdict}",
        flush=True,
    )
    return 1 if args.strict and verdict == "FAIL" else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
