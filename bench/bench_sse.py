"""The SSE gateway holding 19,000 concurrent streams on one process, next to a bare aiohttp SSE server
fed the same way, at the same count, in the same run.

Both servers are processes of their own, each reading its own widget topic with aiokafka (no group,
from the end, the same fetch wait), and both are measured with the same clients and the same load:

- **Gateway**: the real `python -m aforo.sse_gateway` with its default `max_connections` (which its
  descriptor budget fits under this machine's limit). Every stream is a real embed session (session
  records seeded in MongoDB, session JWTs signed with the gateway's secret), so each connect pays the
  token check, the origin check and the session lookup; each event pays the envelope parse, the PII
  allowlist, the history and the fan-out into bounded queues.
- **Baseline**: a bare aiohttp handler per stream awaiting an `asyncio.Queue`, fed by a consumer that
  routes each record by its Kafka key and writes its value untouched (`python -m bench.bench_sse baseline-worker`).

Clients: `--clients` processes (`python -m bench.bench_sse client-worker`, by default one per 5,000 streams: every
process here may hold at most 20,000 descriptors, and one asyncio process cannot read 19,000 streams
and still timestamp fairly), one stream per customer, `CONNECT_CONCURRENCY` connects in flight in all.
They start connecting together; **connect time** is until the last stream of the last process is open.
Then `--rate` widget envelopes per second for `--seconds` go to random customers on a fixed schedule
(open loop: latency counts from the scheduled send time, so a slow phase cannot hide its queueing).
Figures: produce-to-receipt p50/p99 (every event must arrive exactly once; one clock,
`time.monotonic`, for every process), the server's **memory per stream** (RSS with all streams open
minus RSS before, divided by the streams), its CPU per connect and its CPU share under the load. The
clients' garbage collector is paused during the load, so its pauses land on neither side.

Targets (issue #14), all needed for PASS: gateway p99 < 100 ms, at most 16 KiB per stream, connect
time within 2x the baseline's (ratio = baseline connect / gateway connect, at least 0.50).

    python -m bench.bench_sse [--streams N] [--clients K] [--rate R] [--seconds S] [--strict]

Uses the stack named by AFORO_TEST_KAFKA_BOOTSTRAP/AFORO_TEST_MONGO_URI (`python -m bench.run` sets them),
else starts a private one. Every process raises its own file-descriptor soft limit (`resource.setrlimit`).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import random
import resource
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from aiohttp import web
from aiokafka import TopicPartition
from tests.support.stack import ROOT, LocalStack

from aforo.shared.collections import EMBED_KEYS, EMBED_SESSIONS
from aforo.shared.embed import EmbedKeyDocument, EmbedKeyStatus, EmbedSessionDocument
from aforo.shared.envelope import format_utc
from aforo.shared.kafka import TopicSpec, create_consumer, create_producer, ensure_topics
from aforo.shared.mongo import MongoStore
from aforo.shared.secret_box import generate_key
from aforo.shared.serde import dumps_json
from aforo.shared.settings import ServiceSettings
from aforo.sse_gateway.embed_tokens import issue_session_token
from bench.common import (
    BaselineServer,
    ProfiledServiceProcess,
    add_profile_option,
    bench_stack,
    cpu_seconds,
    percentile,
    print_profile,
    stop_on_signals,
    summary,
)

NAME = "sse"
TARGET_CONNECT_RATIO = 0.50
"""Baseline connect time / gateway connect time: the gateway opens its streams within 2x the time."""
TARGET_P99_MS = 100.0
TARGET_KIB_PER_STREAM = 16.0
DEFAULT_STREAMS = 19_000
STREAMS_PER_CLIENT = 5_000
DEFAULT_RATE = 100.0
DEFAULT_SECONDS = 20.0
WARMUP_SECONDS = 2.0
CONNECT_CONCURRENCY = 100
"""Connects in flight at once, over all client processes."""
CONNECT_TIMEOUT = 300.0
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
    try:
        await stop_on_signals().wait()
    finally:
        feeder.cancel()
        await consumer.stop()
        await runner.shutdown()
        await runner.cleanup()


def baseline_worker(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_sse baseline-worker")
    for option in ("--port", "--bootstrap", "--topic"):
        parser.add_argument(option, required=True)
    parser.add_argument("--streams", type=int, required=True)
    args = parser.parse_args(argv)
    raise_fd_limit(args.streams + 256)
    asyncio.run(baseline_serve(int(args.port), args.bootstrap, args.topic))
    return 0


def baseline_process(bootstrap: str, topic: str, streams: int) -> BaselineServer:
    """The bare aiohttp SSE handler broadcasting from an asyncio queue, in its own process."""
    arguments = ("--bootstrap", bootstrap, "--topic", topic, "--streams", str(streams))
    return BaselineServer("bench.bench_sse", "sse", LOG_DIR, arguments)


# ---------------------------------------------------------------------------------------------
# Clients: worker processes, the same for both sides. One asyncio process cannot read 19,000 streams
# and still timestamp each event fairly, and every process here may hold at most 20,000 descriptors.


async def client_serve(urls: list[str], origin: str | None, concurrency: int) -> int:
    """One client process: connect on `go`, then timestamp every event id until `stop`.

    Speaks lines on stdin/stdout with the coordinator: `ready`; `go` → `connected <monotonic>` (or
    `failed <why>`); `count` → `count <events> <duplicates> <ended>`; `report` → `report <json>`;
    `stop` ends it. Times are `time.monotonic()`, one clock for every process of the machine (Linux).
    """
    loop = asyncio.get_running_loop()
    commands = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)

    def say(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    async def command() -> str:
        return (await commands.readline()).decode().strip() or "stop"

    receipts: dict[str, float] = {}
    duplicates = 0
    ended = 0
    connected = 0
    all_connected = asyncio.Event()
    gate = asyncio.Semaphore(concurrency)
    headers = {"Origin": origin} if origin else {}
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None, sock_connect=60)

    async def client(session: aiohttp.ClientSession, url: str) -> None:
        nonlocal connected, duplicates, ended
        async with gate:
            response = await session.get(url, headers=headers)
        if response.status != 200:
            raise RuntimeError(f"stream answered {response.status}: {(await response.text())[:200]}")
        connected += 1
        if connected == len(urls):
            all_connected.set()
        try:
            async for line in response.content:
                if line.startswith(b"id: "):
                    event_id = line[4:].strip().decode()
                    if event_id in receipts:
                        duplicates += 1
                    else:
                        receipts[event_id] = time.monotonic()
        finally:
            response.close()
        ended += 1

    say("ready")
    if await command() != "go":
        return 1
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks = [asyncio.create_task(client(session, url)) for url in urls]
        waiter = asyncio.create_task(all_connected.wait())
        await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED, timeout=CONNECT_TIMEOUT)
        if not all_connected.is_set():
            failed = [task.exception() for task in tasks if task.done() and task.exception() is not None]
            say(f"failed {connected} of {len(urls)} connected: {failed[:1]!r}")
            waiter.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            return 1
        say(f"connected {time.monotonic()!r}")
        # The client's own collector must not add its pauses to either side's latency: collect now,
        # set what exists aside, and collect nothing during the load (little is allocated).
        gc.collect()
        gc.freeze()
        gc.disable()
        while (line := await command()) != "stop":
            if line == "count":
                say(f"count {len(receipts)} {duplicates} {ended}")
            elif line == "report":
                say("report " + json.dumps({"receipts": receipts, "duplicates": duplicates, "ended": ended}))
        gc.enable()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return 0


def client_worker(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_sse client-worker")
    parser.add_argument("--urls", required=True, type=Path, help="a file, one stream URL a line")
    parser.add_argument("--origin", default="")
    parser.add_argument("--concurrency", type=int, required=True)
    args = parser.parse_args(argv)
    urls = args.urls.read_text().split()
    raise_fd_limit(len(urls) + 256)
    return asyncio.run(client_serve(urls, args.origin or None, args.concurrency))


class ClientProcess:
    """The coordinator's end of one `client-worker`."""

    def __init__(self, process: asyncio.subprocess.Process, log_path: Path) -> None:
        self.process = process
        self.log_path = log_path

    @classmethod
    async def start(cls, name: str, urls: list[str], origin: str | None, concurrency: int) -> ClientProcess:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        urls_path = LOG_DIR / f"sse-{name}.urls"
        urls_path.write_text("\n".join(urls) + "\n")
        log_path = LOG_DIR / f"sse-{name}.log"
        with log_path.open("ab") as log_file:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.bench_sse",
                "client-worker",
                "--urls",
                str(urls_path),
                "--origin",
                origin or "",
                "--concurrency",
                str(concurrency),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log_file,
                limit=256 * 1024 * 1024,
            )
        return cls(process, log_path)

    async def send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command.encode() + b"\n")
        await self.process.stdin.drain()

    async def expect(self, word: str, timeout: float) -> str:
        """The rest of the next line, which must start with `word`."""
        assert self.process.stdout is not None
        line = (await asyncio.wait_for(self.process.stdout.readline(), timeout)).decode().strip()
        head, _, rest = line.partition(" ")
        if head != word:
            log_tail = self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
            raise RuntimeError(
                f"client {self.log_path.name}: expected {word!r}, got {line[:300]!r}\n{log_tail}"
            )
        return rest

    async def ask(self, command: str, timeout: float = 60.0) -> str:
        await self.send(command)
        return await self.expect(command, timeout)

    async def stop(self) -> None:
        if self.process.returncode is None:
            try:
                await self.send("stop")
                await asyncio.wait_for(self.process.wait(), 30)
            except (ConnectionError, TimeoutError):
                self.process.kill()
                await self.process.wait()


@dataclass
class Side:
    name: str
    pid: int
    topic: str
    stream_url: Callable[[int], str]
    origin: str | None = None


@dataclass
class Figures:
    p50_ms: float
    p99_ms: float
    max_ms: float
    bytes_per_stream: float
    connect_seconds: float
    connect_cpu_ms_per_stream: float
    load_cpu_share: float


async def run_load(bootstrap: str, topic: str, streams: int, rate: float, seconds: float) -> dict[str, float]:
    """Produce on a fixed schedule (open loop); the scheduled send time of each event id."""
    producer = create_producer(ServiceSettings(kafka_bootstrap_servers=bootstrap))
    await producer.start()
    scheduled: dict[str, float] = {}
    pending: list[Awaitable[object]] = []
    try:
        count = int(rate * seconds)
        began = time.monotonic()
        for number in range(count):
            at = began + number / rate
            delay = at - time.monotonic()
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


async def measure(
    side: Side, bootstrap: str, streams: int, clients: int, rate: float, seconds: float
) -> Figures:
    """Connect every stream from `clients` processes at once, hold them, run the load, collect."""
    per_client = max(1, CONNECT_CONCURRENCY // clients)
    shares = [range(number, streams, clients) for number in range(clients)]
    processes = await asyncio.gather(
        *(
            ClientProcess.start(
                f"{side.name}-{number}", [side.stream_url(index) for index in share], side.origin, per_client
            )
            for number, share in enumerate(shares)
        )
    )
    try:
        await asyncio.gather(*(process.expect("ready", 60) for process in processes))
        await asyncio.sleep(1.0)
        rss_before = rss_bytes(side.pid)
        cpu_before = cpu_seconds(side.pid) or 0.0
        began = time.monotonic()
        await asyncio.gather(*(process.send("go") for process in processes))
        connected_at = [
            float(at)
            for at in await asyncio.gather(
                *(process.expect("connected", CONNECT_TIMEOUT + 30) for process in processes)
            )
        ]
        connect_seconds = max(connected_at) - began
        cpu_connect = (cpu_seconds(side.pid) or 0.0) - cpu_before
        await asyncio.sleep(2.0)  # let the server settle with every stream open
        rss_after = rss_bytes(side.pid)
        cpu_load_before = cpu_seconds(side.pid) or 0.0
        load_began = time.monotonic()
        scheduled = await run_load(bootstrap, side.topic, streams, rate, seconds)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            counts = await asyncio.gather(*(process.ask("count") for process in processes))
            if sum(int(count.split()[0]) for count in counts) >= len(scheduled):
                break
            await asyncio.sleep(0.2)
        load_cpu_share = ((cpu_seconds(side.pid) or 0.0) - cpu_load_before) / (time.monotonic() - load_began)
        reports = [json.loads(text) for text in await asyncio.gather(*(p.ask("report") for p in processes))]
    finally:
        await asyncio.gather(*(process.stop() for process in processes))
    receipts: dict[str, float] = {}
    duplicates = sum(report["duplicates"] for report in reports)
    ended = sum(report["ended"] for report in reports)
    for report in reports:
        for event_id, at in report["receipts"].items():
            if event_id in receipts:
                duplicates += 1
            receipts[event_id] = min(at, receipts.get(event_id, at))
    missing = set(scheduled) - set(receipts)
    if missing or duplicates or ended:
        raise RuntimeError(
            f"{side.name}: {len(missing)} of {len(scheduled)} events never arrived, "
            f"{duplicates} arrived twice, {ended} streams ended during the load"
        )
    warmup = int(rate * WARMUP_SECONDS)
    ordered = sorted(scheduled, key=scheduled.__getitem__)[warmup:]
    latencies = [(receipts[event_id] - scheduled[event_id]) * 1000 for event_id in ordered]
    return Figures(
        p50_ms=percentile(latencies, 0.50),
        p99_ms=percentile(latencies, 0.99),
        max_ms=max(latencies),
        bytes_per_stream=(rss_after - rss_before) / streams,
        connect_seconds=connect_seconds,
        connect_cpu_ms_per_stream=cpu_connect * 1000 / streams,
        load_cpu_share=load_cpu_share,
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


async def bench(
    stack: LocalStack, streams: int, clients: int, rate: float, seconds: float, profile: bool
) -> tuple[Figures, Figures]:
    run = uuid.uuid4().hex[:8]
    baseline_topic = f"bench-sse-{run}.baseline.widget"
    gateway_prefix = f"bench-sse-{run}."
    await ensure_topics(
        stack.kafka_bootstrap, [TopicSpec(baseline_topic, 3), TopicSpec(f"{gateway_prefix}events.widget", 3)]
    )

    baseline = baseline_process(stack.kafka_bootstrap, baseline_topic, streams)
    try:
        await baseline.wait_ready()
        print(
            f"{NAME}: baseline  connecting {streams} streams from {clients} client processes ...", flush=True
        )
        baseline_side = Side(
            "baseline",
            baseline.process.pid,
            baseline_topic,
            lambda index: f"{baseline.url}/stream?customer=c{index}",
        )
        baseline_figures = await measure(
            baseline_side, stack.kafka_bootstrap, streams, clients, rate, seconds
        )
    finally:
        baseline.terminate()
    report("baseline", baseline_figures)

    database = f"bench_sse_{run}"
    mongo = MongoStore(stack.mongo_uri, database, app_name="bench-sse")
    await mongo.start([EMBED_KEYS, EMBED_SESSIONS])
    tokens = await seed_sessions(mongo, streams)
    profile_path = LOG_DIR / f"sse-gateway-{run}.prof" if profile else None
    gateway = ProfiledServiceProcess(
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
            "AFORO_LOG_LEVEL": "WARNING",
        },
        LOG_DIR,
        profile_path,
    ).start()
    try:
        await gateway.wait_ready()
        assert gateway.process is not None
        print(
            f"{NAME}: gateway   connecting {streams} streams from {clients} client processes ...", flush=True
        )
        gateway_side = Side(
            "gateway",
            gateway.process.pid,
            f"{gateway_prefix}events.widget",
            lambda index: f"{gateway.url}/v1/embed/stream?access_token={tokens[index]}",
            ORIGIN,
        )
        gateway_figures = await measure(gateway_side, stack.kafka_bootstrap, streams, clients, rate, seconds)
    finally:
        await asyncio.to_thread(gateway.terminate, 60)
        await mongo.client.drop_database(database)
        await mongo.close()
    report("gateway", gateway_figures)
    if profile_path is not None:
        print_profile_of_gateway(profile_path)
    return gateway_figures, baseline_figures


def print_profile_of_gateway(path: Path) -> None:
    print(
        f"{NAME}: the gateway ran under cProfile ({path}): its figures above are the profiler's", flush=True
    )
    print_profile(NAME, "gateway process", path)


def report(name: str, figures: Figures) -> None:
    print(
        f"{NAME}: {name:9} p50 {figures.p50_ms:.1f} ms  p99 {figures.p99_ms:.1f} ms  max {figures.max_ms:.1f} ms  "
        f"{figures.bytes_per_stream / 1024:.1f} KiB/stream  connected in {figures.connect_seconds:.1f} s "
        f"({figures.connect_cpu_ms_per_stream:.2f} ms CPU per connect)  "
        f"CPU {figures.load_cpu_share:.0%} under the load",
        flush=True,
    )


def verdict_line(streams: int, rate: float, gateway: Figures, baseline: Figures) -> tuple[str, bool]:
    """The summary `bench.run` parses (its ratio is the connect-time one) and whether all targets hold."""
    ratio = baseline.connect_seconds / gateway.connect_seconds if gateway.connect_seconds > 0 else 0.0
    kib = gateway.bytes_per_stream / 1024
    missed = [
        name
        for name, held in (
            ("connect", ratio >= TARGET_CONNECT_RATIO),
            ("p99", gateway.p99_ms < TARGET_P99_MS),
            ("memory", kib <= TARGET_KIB_PER_STREAM),
        )
        if not held
    ]
    line = (
        f"{NAME}: {streams} streams at {rate:g}/s  connect {gateway.connect_seconds:.1f} s "
        f"(baseline {baseline.connect_seconds:.1f})  p99 {gateway.p99_ms:.1f} ms (baseline {baseline.p99_ms:.1f})  "
        f"{kib:.1f} KiB/stream (baseline {baseline.bytes_per_stream / 1024:.1f})  ratio: {ratio:.2f}  "
        f"target >= {TARGET_CONNECT_RATIO:.2f}, p99 < {TARGET_P99_MS:g} ms, <= {TARGET_KIB_PER_STREAM:g} KiB/stream  "
        + (f"missed: {', '.join(missed)}  FAIL" if missed else "PASS")
    )
    return line, not missed


def main(argv: list[str]) -> int:
    if argv[:1] == ["baseline-worker"]:
        return baseline_worker(argv[1:])
    if argv[:1] == ["client-worker"]:
        return client_worker(argv[1:])
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", type=int, default=DEFAULT_STREAMS, help="concurrent streams per side")
    parser.add_argument(
        "--clients",
        type=int,
        default=0,
        help=f"client processes (default: one per {STREAMS_PER_CLIENT:,} streams)",
    )
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE, help="events per second")
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help="load duration per side")
    add_profile_option(
        parser,
        "run the gateway under cProfile and print its top functions (its figures are then the profiler's)",
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    clients = args.clients or max(1, math.ceil(args.streams / STREAMS_PER_CLIENT))
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < math.ceil(args.streams / clients) + 256:
        print(f"{NAME}: the hard file-descriptor limit is {hard}; use more --clients", flush=True)
        return 2

    with bench_stack() as stack:
        gateway, baseline = asyncio.run(
            bench(stack, args.streams, clients, args.rate, args.seconds, args.profile)
        )
    return summary(*verdict_line(args.streams, args.rate, gateway, baseline), args.strict)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
