"""Signed webhook deliveries per second through the dispatcher, next to a bare aiohttp loop posting the
same bodies with the same concurrency to the same receiver; and produce-to-receipt latency at a
steady rate.

One tenant, 20 customers with one endpoint each. The receiver is a process of its own (`bench_dispatcher.py
receiver`) listening on one port per endpoint, as 20 customers' receivers would be 20 hosts: the
dispatcher's per-endpoint limit then applies per endpoint, not to all of them at once. It checks each
delivery's signature with that endpoint's secret and records its wall-clock receipt time per
`X-Aforo-Event-Id`.

- **Throughput**: N INVOICE_GENERATED envelopes are produced to `<prefix>events.system` before the
  dispatcher (`python -m aforo.dispatcher`, its own process, its own database) starts; the figure is
  N / (last receipt - first receipt). The baseline (`python -m bench.bench_dispatcher baseline-worker`, its own
  process) builds the same bodies, signs them with the webhook sender's `delivery_headers` and POSTs them
  with the webhook sender's headers at the dispatcher's nominal concurrency: per_endpoint_concurrency
  per endpoint, times the endpoints, capped by max_in_flight. What is left is the dispatcher's own
  work: Kafka, the gates, the idempotency lookups, secret decryption, the delivery log.
  Targets: at least 0.35 of the baseline's rate, and at most 0.4 ms of CPU per delivery for the
  dispatcher and the database together (each side prints its CPU ms per delivery; the dispatcher's
  line also the database's, and the database operations per delivery from its `serverStatus`).
- **Latency**: a fresh dispatcher, once it has delivered one warm-up event per endpoint, gets events
  at a steady rate (200/s for 15 s by default), each payload stamped with its produce wall time
  (`producedAt`); p50/p95/p99 of receipt - produce. The baseline posts at the same rate, directly,
  for reference. Targets: p99 under 100 ms at 200/s, and under 500 ms at a steady 1,000/s.
- **Audit trail**: a dispatcher at a steady 1,000/s with the API (`python -m aforo.api`) on its
  database, asked for one customer's `/internal/v1/delivery-logs/by-customer` four times a second (a run
  of its own, so the API stays out of the latency figures); for each of that customer's deliveries,
  the time from its receipt to the first listing of its row. Target: every row within 1 s.

A dispatcher that has not delivered everything by a deadline is a FAIL with the figures it reached
(undelivered events count as their wait so far, so latencies become lower bounds). Anything but one
delivery per event with a valid signature at its own customer's endpoint, and one DELIVERED row per
event after a clean SIGTERM, is an error, not a figure.

    python -m bench.bench_dispatcher [--events N] [--rounds R] [--rate R] [--seconds S] [--profile] [--strict]

Uses the stack named by AFORO_TEST_KAFKA_BOOTSTRAP/AFORO_TEST_MONGO_URI (`python -m bench.run` sets them),
else starts a private one. `--profile` (or AFORO_BENCH_PROFILE=1) adds one unmeasured throughput run
of each side under cProfile.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiokafka import AIOKafkaProducer
from pymongo.errors import PyMongoError
from tests.support.dispatch_fixtures import DispatchWorld
from tests.support.processes import ServiceProcess
from tests.support.stack import ROOT, TEST_JWT_SECRET, LocalStack, free_port, service_env

from aforo.api.auth import AuthConfig
from aforo.api.dev_tokens import mint_dev_token
from aforo.api.resources.delivery_logs.routes import BY_CUSTOMER_PATH
from aforo.dispatcher.settings import DispatcherSettings
from aforo.dispatcher.webhook_sender import RESPONSE_BODY_LIMIT, delivery_headers
from aforo.shared.envelope import EventEnvelope, parse_utc
from aforo.shared.kafka import TopicNames, TopicSpec, create_producer, ensure_topics
from aforo.shared.mongo import MongoStore
from aforo.shared.secret_box import SecretBox, generate_key
from aforo.shared.serde import dumps_json, loads_json
from aforo.shared.settings import ServiceSettings
from aforo.shared.signing import SIGNATURE_HEADER, verify_signature
from bench.common import (
    MeasuredProcess,
    ProfiledServiceProcess,
    WorkerProcess,
    add_profile_option,
    bench_stack,
    cpu_seconds,
    delete_topics,
    invoice_fields,
    percentile,
    print_profile,
    run_profiled,
    stop_on_signals,
)

NAME = "dispatcher"
TARGET_RATIO = 0.35
TARGET_P99_MS = 100.0
TARGET_CPU_MS_PER_DELIVERY = 0.4  # the dispatcher's and the database's CPU together
HIGH_RATE = 1_000.0
TARGET_HIGH_RATE_P99_MS = 500.0
TARGET_AUDIT_LAG_MS = 1_000.0  # every row on the audit trail within 1 s of its attempt (issue #14)
AUDITED_CUSTOMER = 0  # the customer whose audit trail the API is asked for, as an operator would
AUDIT_POLL_SECONDS = 0.25  # an operator's screen refreshing often; ten polls a second load SecantusDB itself
AUDIT_PAGE_ROWS = 100  # 2 s of one customer's rows at 1,000/s: a row listed within 1 s is on the page
AUDIT_SEQUENCE_BASE = 30_000_000
TENANT = "tenant-bench"
CUSTOMERS = 20  # one endpoint each
EVENT_TYPE = "INVOICE_GENERATED"
DEFAULT_EVENTS = 5_000
DEFAULT_ROUNDS = 3
"""The dispatcher's first run is also the first consumer of a freshly started broker (the baseline never
reads Kafka), whose fetch path the JVM is still compiling: like the bridge bench, the best of three counts."""
BASELINE_PASSES = 3  # baseline runs per round; the best counts, as for the dispatcher's rounds
DEFAULT_RATE = 200.0
DEFAULT_SECONDS = 15.0
LATENCY_SEQUENCE_BASE = 10_000_000  # latency events never share an eventId with throughput events
WARM_UP_SEQUENCE_BASE = 20_000_000
THROUGHPUT_DEADLINE_RATE = 100.0  # a throughput run ends after events / this many seconds (at least 30)
LATENCY_DRAIN_SECONDS = 10.0  # how long after the last produce an event may still arrive
LOG_CATCH_UP_SECONDS = 10.0  # how long a complete run's delivery log may lag before SIGTERM
LOG_DIR = ROOT / ".local" / "bench-logs"
EVENT_ID_NAMESPACE = uuid.UUID("6f1c2a4e-9b7d-4c1e-8a35-0d2f6b9e7c11")
# The dispatcher's own settings, which the baseline copies.
_DISPATCHER_FIELDS = DispatcherSettings.model_fields
PER_ENDPOINT_CONCURRENCY: int = _DISPATCHER_FIELDS["per_endpoint_concurrency"].default
MAX_IN_FLIGHT: int = _DISPATCHER_FIELDS["max_in_flight"].default
ATTEMPT_TIMEOUT_SECONDS: float = _DISPATCHER_FIELDS["attempt_timeout_seconds"].default
CONCURRENCY = min(PER_ENDPOINT_CONCURRENCY * CUSTOMERS, MAX_IN_FLIGHT)
PARTITIONS: int = ServiceSettings.model_fields["topic_partitions"].default


# ---------------------------------------------------------------------------------------------
# The data: invoice events of 20 customers, the same bytes whichever side sends them.


def customer_id(index: int) -> str:
    return f"cus_{index:04d}"


def endpoint_secret(index: int) -> str:
    """A bench-only signing secret per endpoint; the receiver verifies with the same one."""
    return f"whsec_bench_{index:02d}_5a7d0c4e1b9f3862"


def event_id_for(sequence: int) -> str:
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, str(sequence)))


def invoice_envelope(sequence: int, produced_at: float) -> EventEnvelope:
    """One INVOICE_GENERATED envelope (585-770 bytes), the customers in turn, stamped `producedAt`."""
    rng = random.Random(sequence)
    customer = customer_id(sequence % CUSTOMERS)
    issued = datetime(2025, 6, 1, tzinfo=UTC) + timedelta(seconds=sequence)
    payload: dict[str, Any] = {
        "tenantId": TENANT,
        "customerId": customer,
        "invoiceId": f"inv_{rng.getrandbits(80):020x}",
        **invoice_fields(rng, sequence, issued),
        # Microseconds: the latency figures are computed from this stamp.
        "producedAt": datetime.fromtimestamp(produced_at, UTC)
        .isoformat(timespec="microseconds")
        .replace("+00:00", "Z"),
    }
    return EventEnvelope(
        event_id=event_id_for(sequence),
        event_type=EVENT_TYPE,
        category="Billing",
        severity="INFO",
        tenant_id=TENANT,
        customer_id=customer,
        occurred_at=issued,
        payload=payload,
    )


def sequences(first: int, count: int) -> range:
    return range(first, first + count)


# ---------------------------------------------------------------------------------------------
# The receiver: its own process, one port per endpoint, as lean as aiohttp's server allows.

RECEIPTS = web.AppKey("receipts", list[tuple[str, float, str, bool]])
SECRETS = [endpoint_secret(index) for index in range(CUSTOMERS)]
CUSTOMER_IDS = [customer_id(index) for index in range(CUSTOMERS)]


async def receive_hook(request: web.Request) -> web.Response:
    """Record (eventId, receipt wall time, producedAt, signed by this endpoint's secret for its customer)."""
    received_at = time.time()
    body = await request.read()
    index = int(request.match_info["index"])
    signature = request.headers.get(SIGNATURE_HEADER)
    produced_at = ""
    ok = signature is not None and verify_signature(body, signature, SECRETS[index])
    try:
        envelope = loads_json(body)
        produced_at = str(envelope["payload"]["producedAt"])
        ok = ok and envelope["customerId"] == CUSTOMER_IDS[index]
    except (ValueError, KeyError, TypeError):
        ok = False
    request.app[RECEIPTS].append((request.headers.get("X-Aforo-Event-Id", ""), received_at, produced_at, ok))
    return web.Response(text="ok")


async def receipt_count(request: web.Request) -> web.Response:
    return web.Response(text=str(len(request.app[RECEIPTS])))


async def receipt_list(request: web.Request) -> web.Response:
    return web.Response(body=dumps_json(request.app[RECEIPTS]), content_type="application/json")


async def receipt_reset(request: web.Request) -> web.Response:
    request.app[RECEIPTS].clear()
    return web.Response(status=204)


async def serve_receiver(control_port: int, hook_ports: list[int]) -> None:
    app = web.Application()
    app[RECEIPTS] = []
    app.add_routes(
        [
            web.post("/hooks/{index}", receive_hook),
            web.get("/_count", receipt_count),
            web.get("/_receipts", receipt_list),
            web.post("/_reset", receipt_reset),
        ]
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    for port in [control_port, *hook_ports]:
        await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    try:
        await stop_on_signals().wait()
    finally:
        await runner.cleanup()


def receiver_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_dispatcher receiver")
    parser.add_argument("--control-port", type=int, required=True)
    parser.add_argument("--hook-ports", required=True, help="comma-separated, one per endpoint")
    args = parser.parse_args(argv)
    asyncio.run(serve_receiver(args.control_port, [int(port) for port in args.hook_ports.split(",")]))
    return 0


@dataclass(frozen=True)
class Receipt:
    event_id: str
    received_at: float
    produced_at: float
    ok: bool


class ReceiverProcess(WorkerProcess):
    """The receiver as a child process, driven over its control port."""

    def __init__(self) -> None:
        self.control_port = free_port()
        self.hook_ports = [free_port() for _ in range(CUSTOMERS)]
        super().__init__(
            "bench.bench_dispatcher",
            "receiver",
            ["--control-port", str(self.control_port), "--hook-ports", ",".join(map(str, self.hook_ports))],
            LOG_DIR / f"receiver-{self.control_port}.log",
        )
        self.session = aiohttp.ClientSession(f"http://127.0.0.1:{self.control_port}")

    def hook_url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.hook_ports[index]}/hooks/{index}"

    @property
    def hook_urls(self) -> list[str]:
        return [self.hook_url(index) for index in range(CUSTOMERS)]

    async def wait_ready(self, timeout: float = 20.0) -> ReceiverProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"receiver exited with {self.process.returncode}: {self.log_path}")
            with contextlib.suppress(aiohttp.ClientError):
                await self.count()
                return self
            await asyncio.sleep(0.1)
        raise RuntimeError(f"receiver not listening after {timeout:.0f} s; see {self.log_path}")

    async def count(self) -> int:
        async with self.session.get("/_count") as response:
            response.raise_for_status()
            return int(await response.text())

    async def receipts(self) -> list[Receipt]:
        async with self.session.get("/_receipts") as response:
            response.raise_for_status()
            rows = loads_json(await response.read())
        return [
            Receipt(event_id, received_at, parse_utc(produced_at).timestamp() if produced_at else 0.0, ok)
            for event_id, received_at, produced_at, ok in rows
        ]

    async def reset(self) -> None:
        async with self.session.post("/_reset") as response:
            response.raise_for_status()

    async def close(self) -> None:
        await self.session.close()
        with contextlib.suppress(subprocess.TimeoutExpired):  # killed then, which is all close needs
            await asyncio.to_thread(self.terminate, 10)


# ---------------------------------------------------------------------------------------------
# The baseline: a bare aiohttp loop, its own process (`baseline-worker`), like the dispatcher.


async def post_signed(session: aiohttp.ClientSession, url: str, secret: str, envelope: EventEnvelope) -> None:
    """Sign and POST one delivery as the dispatcher's webhook sender does (headers, timeout, body read)."""
    body = envelope.to_json_bytes()
    headers = delivery_headers(body, [secret], envelope.event_id, envelope.event_type, 1, int(time.time()))
    async with session.post(
        url,
        data=body,
        headers=headers,
        allow_redirects=False,
        timeout=aiohttp.ClientTimeout(total=ATTEMPT_TIMEOUT_SECONDS),
    ) as response:
        await response.content.read(RESPONSE_BODY_LIMIT)
        if response.status != 200:
            raise RuntimeError(f"receiver answered {response.status} to {envelope.event_id}")


async def baseline_loop(hook_urls: list[str], first: int, events: int, rate: float | None) -> None:
    """POST `events` bodies: all at once with the dispatcher's concurrency, or `rate` per second.

    At full speed, per_endpoint_concurrency workers per endpoint take that endpoint's bodies in turn
    (built beforehand, as the dispatcher's are produced beforehand). At a rate, each body is built and
    stamped when its turn comes on a fixed schedule, and waits for a slot on its endpoint if all are busy.
    """
    connector = aiohttp.TCPConnector(limit=CONCURRENCY, limit_per_host=PER_ENDPOINT_CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:
        if rate is None:
            queues: list[list[EventEnvelope]] = [[] for _ in range(CUSTOMERS)]
            now = time.time()
            for sequence in sequences(first, events):
                queues[sequence % CUSTOMERS].append(invoice_envelope(sequence, now))
            for queue in queues:
                queue.reverse()  # pop() from the end takes them in order

            async def worker(index: int) -> None:
                queue = queues[index]
                while queue:
                    await post_signed(session, hook_urls[index], endpoint_secret(index), queue.pop())

            await asyncio.gather(
                *(
                    worker(index)
                    for index in range(CUSTOMERS)
                    for _ in range(min(PER_ENDPOINT_CONCURRENCY, CONCURRENCY))
                )
            )
            return
        slots = [asyncio.Semaphore(PER_ENDPOINT_CONCURRENCY) for _ in range(CUSTOMERS)]

        async def send(sequence: int) -> None:
            index = sequence % CUSTOMERS
            envelope = invoice_envelope(sequence, time.time())
            async with slots[index]:
                await post_signed(session, hook_urls[index], endpoint_secret(index), envelope)

        tasks: list[asyncio.Task[None]] = []
        began = time.monotonic()
        for number, sequence in enumerate(sequences(first, events)):
            delay = began + number / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(sequence)))
        await asyncio.gather(*tasks)


def baseline_worker(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_dispatcher baseline-worker")
    parser.add_argument("--hook-urls", required=True, help="comma-separated, one per endpoint")
    parser.add_argument("--first", type=int, required=True, help="first event sequence number")
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--rate", type=float, help="events per second; all at once when absent")
    parser.add_argument("--profile", type=Path)
    args = parser.parse_args(argv)
    return run_profiled(
        baseline_loop(args.hook_urls.split(","), args.first, args.events, args.rate), args.profile
    )


class BaselineProcess(WorkerProcess):
    """The baseline worker as a child process; it exits by itself once every body is posted."""

    def __init__(
        self,
        receiver: ReceiverProcess,
        first: int,
        events: int,
        rate: float | None,
        profile: Path | None = None,
    ) -> None:
        arguments = [
            "--hook-urls",
            ",".join(receiver.hook_urls),
            "--first",
            str(first),
            "--events",
            str(events),
        ]
        if rate is not None:
            arguments += ["--rate", str(rate)]
        if profile is not None:
            arguments += ["--profile", str(profile)]
        super().__init__(
            "bench.bench_dispatcher",
            "baseline-worker",
            arguments,
            LOG_DIR / f"dispatcher-baseline-{receiver.control_port}.log",
            exits_by_itself=True,
        )


# ---------------------------------------------------------------------------------------------
# The dispatcher: the real process, one database and topic prefix per run.


class DispatcherProcess(ProfiledServiceProcess):
    """`python -m aforo.dispatcher`, optionally under cProfile (stats written on SIGTERM)."""

    def __init__(self, env: dict[str, str], profile: Path | None) -> None:
        super().__init__("aforo.dispatcher", "AFORO_DISPATCHER_", env, LOG_DIR, profile)

    async def counters(self) -> dict[str, float]:
        """The dispatcher's own counters that say a run was not a plain one: deferrals, retries, DLQ."""
        wanted = (
            "aforo_dispatcher_deferred_total",
            "aforo_dispatcher_retries_scheduled_total",
            "aforo_dispatcher_dead_letter_total",
        )
        totals = dict.fromkeys(wanted, 0.0)
        async with aiohttp.ClientSession() as session, session.get(f"{self.url}/metrics") as response:
            text = await response.text()
        for line in text.splitlines():
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if name in totals:
                totals[name] += float(line.rsplit(" ", 1)[1])
        return totals


@dataclass(frozen=True)
class DispatcherRun:
    """One dispatcher process's world: its own topics, database, consumer groups and secrets key."""

    stack: LocalStack
    prefix: str
    database: str
    secrets_key: str
    mongo: MongoStore
    producer: AIOKafkaProducer

    @property
    def events_topic(self) -> str:
        return TopicNames(self.prefix).system_events

    def env(self) -> dict[str, str]:
        return service_env(
            self.stack,
            self.prefix,
            self.database,
            # SecantusDB keeps at most 10,000 retryable-write records and, past that, sorts them all on
            # every retryable write (~20 ms each): a cost of the local database's age, not of the
            # dispatcher, which would make the figure depend on what ran before. See bench/README.md.
            AFORO_MONGO_URI=with_query(self.stack.mongo_uri, "retryWrites=false"),
            AFORO_SECRETS_ENCRYPTION_KEYS=self.secrets_key,
            # Its own groups: on a shared broker the default group could have other members.
            AFORO_DISPATCHER_CONSUMER_GROUP=f"{self.prefix}dispatcher",
            AFORO_DISPATCHER_RETRY_CONSUMER_GROUP=f"{self.prefix}dispatcher-retry",
        )


def with_query(uri: str, option: str) -> str:
    """`uri` with one more connection-string option (unless it already sets that option)."""
    if option.split("=", 1)[0] in uri:
        return uri
    if "?" in uri:
        return f"{uri}&{option}"
    # The options follow the path, which may be empty: mongodb://host:port/?option
    return f"{uri}?{option}" if "/" in uri.split("://", 1)[-1] else f"{uri}/?{option}"


async def prepare_run(stack: LocalStack, receiver: ReceiverProcess, prefix: str) -> DispatcherRun:
    """A database with the tenant's 20 endpoints (as the API stores them) and the input topic."""
    database = f"bench_{uuid.uuid4().hex[:10]}"
    key = generate_key()
    mongo = MongoStore(stack.mongo_uri, database, app_name="aforo-bench")
    producer = create_producer(ServiceSettings(kafka_bootstrap_servers=stack.kafka_bootstrap))
    await mongo.start()
    await producer.start()
    run = DispatcherRun(stack, prefix, database, key, mongo, producer)
    world = DispatchWorld(mongo, producer, SecretBox([key]), prefix)
    for index in range(CUSTOMERS):
        await world.endpoint(
            receiver.hook_url(index),
            tenant=TENANT,
            customer=customer_id(index),
            events=[EVENT_TYPE],
            secrets=[endpoint_secret(index)],
        )
    await ensure_topics(
        stack.kafka_bootstrap, [TopicSpec(run.events_topic, PARTITIONS)], client_id="aforo-bench"
    )
    return run


async def close_run(run: DispatcherRun) -> None:
    await run.producer.stop()
    with contextlib.suppress(PyMongoError):
        await run.mongo.client.drop_database(run.database)
    await run.mongo.close()


async def produce_all(run: DispatcherRun, first: int, events: int) -> None:
    """Produce a batch of events at once, keyed tenant:customer like the bridge keys them."""
    now = time.time()
    futures = []
    for sequence in sequences(first, events):
        envelope = invoice_envelope(sequence, now)
        futures.append(
            await run.producer.send(run.events_topic, envelope.to_json_bytes(), key=envelope.partition_key)
        )
    await asyncio.gather(*futures)


async def produce_at_rate(
    run: DispatcherRun, first: int, events: int, rate: float
) -> tuple[dict[str, float], float]:
    """Produce on a fixed schedule, each event stamped as it is produced.

    Returns each event's produce time and the worst lag behind the schedule (s).
    """
    futures = []
    produced: dict[str, float] = {}
    began = time.monotonic()
    worst_lag = 0.0
    for number, sequence in enumerate(sequences(first, events)):
        due = began + number / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        worst_lag = max(worst_lag, time.monotonic() - due)
        now = time.time()
        envelope = invoice_envelope(sequence, now)
        produced[envelope.event_id] = now
        futures.append(
            await run.producer.send(run.events_topic, envelope.to_json_bytes(), key=envelope.partition_key)
        )
    await asyncio.gather(*futures)
    return produced, worst_lag


async def delivery_log_counts(run: DispatcherRun) -> tuple[int, int]:
    """(DELIVERED rows, rows of any other status) in the run's delivery log."""
    rows = run.mongo.collection("delivery_logs")
    delivered = await rows.count_documents({"tenantId": TENANT, "status": "DELIVERED"})
    other = await rows.count_documents({"tenantId": TENANT, "status": {"$ne": "DELIVERED"}})
    return delivered, other


async def start_dispatcher(run: DispatcherRun, profile: Path | None = None) -> DispatcherProcess:
    process = DispatcherProcess(run.env(), profile).start()
    try:
        await process.wait_ready(timeout=90)
    except BaseException:
        process.close()
        raise
    return process


async def stop_dispatcher(
    process: DispatcherProcess, run: DispatcherRun, delivered: int, complete: bool
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """SIGTERM, then check that every delivery has its one DELIVERED row and nothing else was logged.

    Returns (notes on the dispatcher's counters, problems). A problem is behaviour a user would see
    (a delivered event missing from the delivery log), reported with the figures and failing the
    verdict. An incomplete run is killed instead: its backlog would only run out the drain's grace.
    """
    counters = await process.counters()
    notes = tuple(f"{name} {value:.0f}" for name, value in counters.items() if value)
    if not complete:
        process.kill()
        return notes, ()
    # Rows are flushed in batches beside the deliveries; let a log that is merely behind catch up,
    # so that what is checked below is the drain. (Estimated: a count would scan the rows, taking the
    # database's time from the flush it waits for.)
    rows = run.mongo.collection("delivery_logs")
    deadline = time.monotonic() + LOG_CATCH_UP_SECONDS
    while await rows.estimated_document_count() < delivered and time.monotonic() < deadline:
        await asyncio.sleep(1.0)
    code = await asyncio.to_thread(process.terminate, 30)
    if code != 0:
        raise RuntimeError(f"dispatcher exited with {code} on SIGTERM; see {process.log_path}")
    logged, other = await delivery_log_counts(run)
    if logged == delivered and not other:
        return notes, ()
    why = "; its drain timed out" if '"drain_timed_out"' in process.log_text() else ""
    return notes, (
        f"after SIGTERM (exit 0{why}) the delivery log has {logged} DELIVERED rows for {delivered} "
        f"deliveries and {other} rows of another status; see {process.log_path}",
    )


# ---------------------------------------------------------------------------------------------
# Measuring: the same method for both sides.


@dataclass(frozen=True)
class ThroughputResult:
    side: str
    expected: int
    delivered: int
    seconds: float  # first receipt to last receipt
    cpu_share: float | None  # the sender's CPU time / wall time while deliveries arrived; None off Linux
    receiver_cpu_share: float | None
    database_cpu_share: float | None = None  # the local SecantusDB's, when it runs on this machine
    notes: tuple[str, ...] = ()  # the dispatcher's counters that say the run was not a plain one
    problems: tuple[str, ...] = ()  # wrong behaviour other than the receipts (which is an error)
    database_operations: int | None = None  # serverStatus opcounters over the run

    def cpu_ms_per_delivery(self, share: float | None) -> float | None:
        """A CPU share over the run as milliseconds of CPU per delivery."""
        if share is None or not self.delivered:
            return None
        return share * self.seconds * 1000 / self.delivered

    @property
    def total_cpu_ms_per_delivery(self) -> float | None:
        """The sender's CPU per delivery plus the database's (the dispatcher's cost of a delivery)."""
        own = self.cpu_ms_per_delivery(self.cpu_share)
        if own is None:
            return None
        return own + (self.cpu_ms_per_delivery(self.database_cpu_share) or 0.0)

    @property
    def complete(self) -> bool:
        return self.delivered == self.expected

    @property
    def per_second(self) -> float:
        return self.delivered / self.seconds if self.seconds > 0 else 0.0

    def describe(self, round_number: int) -> str:
        own_ms = self.cpu_ms_per_delivery(self.cpu_share)
        cpu = f", {self.cpu_share:.0%} of a core = {own_ms:.3f} CPU ms/delivery" if own_ms is not None else ""
        receiver = f", receiver {self.receiver_cpu_share:.0%}" if self.receiver_cpu_share is not None else ""
        database_ms = self.cpu_ms_per_delivery(self.database_cpu_share)
        if database_ms is not None:
            receiver += f", database {self.database_cpu_share:.0%} = {database_ms:.3f} CPU ms/delivery"
        if self.database_operations is not None and self.delivered:
            receiver += f", {self.database_operations / self.delivered:.2f} database operations/delivery"
        count = f"{self.delivered}" if self.complete else f"only {self.delivered} of {self.expected}"
        return (
            f"dispatcher: round {round_number} {self.side:<10} {self.per_second:,.0f} deliveries/s "
            f"({count} deliveries in {self.seconds:.2f} s{cpu}{receiver})"
        ) + remarks(self.notes, self.problems)


@dataclass(frozen=True)
class LatencyResult:
    side: str
    expected: int
    delivered: int
    rate: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    cpu_share: float | None
    notes: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        return self.delivered == self.expected

    def milliseconds(self, value: float) -> str:
        """An undelivered event counts as the time it had waited when the run ended: a lower bound."""
        return f"{value:.1f}" if self.complete else f">={value:.0f}"

    def describe(self) -> str:
        cpu = f", {self.cpu_share:.0%} of a core" if self.cpu_share is not None else ""
        count = (
            f"{self.delivered} events"
            if self.complete
            else f"only {self.delivered} of {self.expected} events delivered, the others counted as their wait"
        )
        ms = self.milliseconds
        return (
            f"dispatcher: latency {self.side:<10} p50 {ms(self.p50_ms)} ms  p95 {ms(self.p95_ms)} ms  "
            f"p99 {ms(self.p99_ms)} ms  max {ms(self.max_ms)} ms "
            f"({count} at {self.rate:.0f}/s, produce to receipt{cpu})"
        ) + remarks(self.notes, self.problems)


@dataclass(frozen=True)
class AuditResult:
    """How long after its receipt each of one customer's deliveries showed on the audit trail."""

    rows: int  # the audited customer's deliveries
    seen: int  # of those, rows the API listed before the run ended
    p50_ms: float
    p99_ms: float
    max_ms: float
    polls: int
    rate: float
    notes: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()

    @property
    def met(self) -> bool:
        return (
            self.rows > 0
            and self.seen == self.rows
            and self.max_ms <= TARGET_AUDIT_LAG_MS
            and not self.problems
        )

    def describe(self) -> str:
        unseen = (
            "" if self.seen == self.rows else f", {self.rows - self.seen} never listed (counted to the end)"
        )
        return (
            f"dispatcher: audit trail  p50 {self.p50_ms:.0f} ms  p99 {self.p99_ms:.0f} ms  max {self.max_ms:.0f} ms "
            f"from receipt to the row on {BY_CUSTOMER_PATH} ({self.rows} deliveries of "
            f"{customer_id(AUDITED_CUSTOMER)} at {self.rate:.0f}/s, {self.polls} polls{unseen}; "
            f"target max <= {TARGET_AUDIT_LAG_MS:.0f} ms)"
        ) + remarks(self.notes, self.problems)


def remarks(notes: Sequence[str], problems: Sequence[str]) -> str:
    """Lines following a result line."""
    return "".join(f"\ndispatcher:   note: {note}" for note in notes) + "".join(
        f"\ndispatcher:   PROBLEM: {problem}" for problem in problems
    )


async def database_operations(mongo: MongoStore) -> int | None:
    """Every operation the database counted so far (serverStatus opcounters; None if it keeps none)."""
    try:
        status = await mongo.client.admin.command("serverStatus")
    except PyMongoError:
        return None
    counters = status.get("opcounters")
    return int(sum(counters.values())) if isinstance(counters, dict) else None


def database_pid(mongo_uri: str) -> int | None:
    """The local SecantusDB serving `mongo_uri`, found by its command line (Linux); None if not here."""
    port = mongo_uri.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[-1]
    for entry in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            arguments = entry.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"secantus" in arguments and b"--port" in arguments:
            index = arguments.index(b"--port")
            if index + 1 < len(arguments) and arguments[index + 1] == port.encode():
                return int(entry.parent.name)
    return None


class CpuMeter:
    """CPU share of some processes between `begin()` and `end()`."""

    def __init__(self, *pids: int) -> None:
        self.pids = pids
        self._began: tuple[float, list[float | None]] | None = None
        self.shares: list[float | None] = [None] * len(pids)

    def begin(self) -> None:
        self._began = (time.monotonic(), [cpu_seconds(pid) for pid in self.pids])

    @property
    def begun(self) -> bool:
        return self._began is not None

    def end(self) -> None:
        if self._began is None:
            return
        wall = time.monotonic() - self._began[0]
        for number, (pid, before) in enumerate(zip(self.pids, self._began[1], strict=True)):
            after = cpu_seconds(pid)
            if before is not None and after is not None and wall > 0.5:
                self.shares[number] = (after - before) / wall


async def wait_for_receipts(
    receiver: ReceiverProcess, expected: int, process: MeasuredProcess, meter: CpuMeter, deadline: float
) -> int:
    """Until the receiver has `expected` requests or the (monotonic) deadline passes; returns the count.

    The CPU meter runs from the first receipt to the last (or the deadline).
    """
    while True:
        problem = process.failure()
        if problem:
            raise RuntimeError(problem)
        count = await receiver.count()
        if count and not meter.begun:
            meter.begin()
        if count >= expected or time.monotonic() > deadline:
            meter.end()
            return count
        await asyncio.sleep(0.1)


def checked(side: str, receipts: list[Receipt], expected_ids: set[str], *, all_required: bool) -> set[str]:
    """At most one signed delivery per expected event, at its customer's endpoint; returns those missing.

    Raises on anything else: a duplicate, an event nobody sent, a bad signature, or (when
    `all_required`) a missing event. Those are broken behaviour, not slow behaviour.
    """
    counts = Counter(receipt.event_id for receipt in receipts)
    missing = expected_ids - counts.keys()
    unexpected = counts.keys() - expected_ids
    duplicated = sorted(event_id for event_id, count in counts.items() if count > 1)
    unsigned = sum(1 for receipt in receipts if not receipt.ok)
    if (missing and all_required) or unexpected or duplicated or unsigned:
        raise RuntimeError(
            f"{side}: {len(missing)} events missing, {len(unexpected)} unexpected, "
            f"{len(duplicated)} delivered more than once (e.g. {duplicated[:3]}), "
            f"{unsigned} without a valid signature for their endpoint"
        )
    return missing


def latency_result(
    side: str,
    expected: int,
    receipts: list[Receipt],
    rate: float,
    cpu_share: float | None,
    undelivered_waits: Sequence[float] = (),
    notes: tuple[str, ...] = (),
    problems: tuple[str, ...] = (),
) -> LatencyResult:
    """Percentiles of receipt - producedAt (ms); `undelivered_waits` (s) stand in for missing events."""
    latencies = sorted(
        [(receipt.received_at - receipt.produced_at) * 1000 for receipt in receipts]
        + [wait * 1000 for wait in undelivered_waits]
    )
    return LatencyResult(
        side,
        expected,
        len(receipts),
        rate,
        percentile(latencies, 0.50),
        percentile(latencies, 0.95),
        percentile(latencies, 0.99),
        latencies[-1],
        cpu_share,
        notes,
        problems,
    )


def span_seconds(receipts: list[Receipt], ended: float | None = None) -> float:
    """First receipt to the last one, or to `ended` (wall clock) if given."""
    times = [receipt.received_at for receipt in receipts]
    if not times:
        return 0.0
    return max((ended or max(times)) - min(times), 1e-3)


async def baseline_throughput(
    receiver: ReceiverProcess, events: int, profile: Path | None = None
) -> ThroughputResult:
    await receiver.reset()
    process = BaselineProcess(receiver, 0, events, None, profile)
    meter = CpuMeter(process.pid, receiver.pid)
    try:
        deadline = time.monotonic() + max(60.0, events / 100)
        await wait_for_receipts(receiver, events, process, meter, deadline)
    finally:
        code = await asyncio.to_thread(process.terminate, 30)
    if code != 0:
        raise RuntimeError(f"baseline worker exited with {code}; see {process.log_path}")
    receipts = await receiver.receipts()
    checked("baseline", receipts, {event_id_for(s) for s in range(events)}, all_required=True)
    cpu_share, receiver_cpu_share = meter.shares
    return ThroughputResult("baseline", events, events, span_seconds(receipts), cpu_share, receiver_cpu_share)


async def baseline_latency(receiver: ReceiverProcess, rate: float, seconds: float) -> LatencyResult:
    events = round(rate * seconds)
    await receiver.reset()
    process = BaselineProcess(receiver, LATENCY_SEQUENCE_BASE, events, rate)
    meter = CpuMeter(process.pid)
    try:
        await wait_for_receipts(receiver, events, process, meter, time.monotonic() + seconds + 60)
    finally:
        code = await asyncio.to_thread(process.terminate, 30)
    if code != 0:
        raise RuntimeError(f"baseline worker exited with {code}; see {process.log_path}")
    receipts = await receiver.receipts()
    expected = {event_id_for(s) for s in sequences(LATENCY_SEQUENCE_BASE, events)}
    checked("baseline latency", receipts, expected, all_required=True)
    return latency_result("baseline", events, receipts, rate, meter.shares[0])


async def dispatcher_throughput(
    stack: LocalStack, receiver: ReceiverProcess, prefix: str, events: int, profile: Path | None = None
) -> ThroughputResult:
    """Pre-produce `events`, start a dispatcher on them, time first to last receipt (or the deadline)."""
    run = await prepare_run(stack, receiver, prefix)
    process: DispatcherProcess | None = None
    try:
        await produce_all(run, 0, events)
        await receiver.reset()
        process = await start_dispatcher(run, profile)
        database = database_pid(stack.mongo_uri)
        meter = CpuMeter(process.pid, receiver.pid, *([] if database is None else [database]))
        deadline = time.monotonic() + max(30.0, events / THROUGHPUT_DEADLINE_RATE)
        operations_before = await database_operations(run.mongo)
        await wait_for_receipts(receiver, events, process, meter, deadline)
        ended = time.time()
        operations_after = await database_operations(run.mongo)
        receipts = await receiver.receipts()
        missing = checked(
            "dispatcher", receipts, {event_id_for(s) for s in range(events)}, all_required=False
        )
        notes, problems = await stop_dispatcher(process, run, events, complete=not missing)
        # An unfinished run is timed up to its deadline: a dispatcher that stalls has not delivered faster.
        seconds = span_seconds(receipts, None if not missing else ended)
        cpu_share, receiver_cpu_share, *database_share = meter.shares
        return ThroughputResult(
            "dispatcher",
            events,
            len(receipts),
            seconds,
            cpu_share,
            receiver_cpu_share,
            database_share[0] if database_share else None,
            notes,
            problems,
            None
            if operations_before is None or operations_after is None
            else operations_after - operations_before,
        )
    finally:
        if process is not None:
            process.close()
        await close_run(run)


async def warm_up(run: DispatcherRun, receiver: ReceiverProcess, process: DispatcherProcess) -> None:
    """One event per endpoint delivered, then the receiver cleared: the consumer group's join and the
    first connections come after readiness, and stay out of a measured run."""
    await receiver.reset()
    await produce_all(run, WARM_UP_SEQUENCE_BASE, CUSTOMERS)
    warm = await wait_for_receipts(
        receiver, CUSTOMERS, process, CpuMeter(), time.monotonic() + LATENCY_DRAIN_SECONDS * 3
    )
    if warm < CUSTOMERS:
        raise RuntimeError(f"dispatcher delivered {warm}/{CUSTOMERS} warm-up events; see {process.log_path}")
    await receiver.reset()


async def dispatcher_latency(
    stack: LocalStack, receiver: ReceiverProcess, prefix: str, rate: float, seconds: float
) -> LatencyResult:
    """A dispatcher that has caught up (a warm-up event per endpoint delivered), then a steady rate."""
    events = round(rate * seconds)
    run = await prepare_run(stack, receiver, prefix)
    process: DispatcherProcess | None = None
    try:
        process = await start_dispatcher(run)
        await warm_up(run, receiver, process)
        meter = CpuMeter(process.pid)
        meter.begin()
        produced, lag = await produce_at_rate(run, LATENCY_SEQUENCE_BASE, events, rate)
        await wait_for_receipts(receiver, events, process, meter, time.monotonic() + LATENCY_DRAIN_SECONDS)
        ended = time.time()
        receipts = await receiver.receipts()
        missing = checked("dispatcher latency", receipts, set(produced), all_required=False)
        notes, problems = await stop_dispatcher(process, run, CUSTOMERS + events, complete=not missing)
        if lag > 0.05:
            notes += (f"the producer fell up to {lag * 1000:.0f} ms behind its schedule",)
        waits = [ended - produced[event_id] for event_id in missing]
        return latency_result("dispatcher", events, receipts, rate, meter.shares[0], waits, notes, problems)
    finally:
        if process is not None:
            process.close()
        await close_run(run)


async def poll_audit_trail(api: ServiceProcess, seen: dict[str, float], stop: asyncio.Event) -> int:
    """Ask the API for the audited customer's newest rows every `AUDIT_POLL_SECONDS` until `stop`;
    record when each event's row was first listed. Returns the number of polls."""
    token = mint_dev_token(
        AuthConfig(mode="hs256", hs256_secret=TEST_JWT_SECRET), tenant_id=TENANT, roles=["ADMIN"]
    )
    headers = {"Authorization": f"Bearer {token}", "X-Tenant-Id": TENANT}
    params = {"endCustomerId": customer_id(AUDITED_CUSTOMER), "limit": str(AUDIT_PAGE_ROWS)}
    polls = 0
    async with aiohttp.ClientSession(api.url, headers=headers) as session:
        while not stop.is_set():
            began = time.monotonic()
            async with session.get(BY_CUSTOMER_PATH, params=params) as response:
                response.raise_for_status()
                page = loads_json(await response.read())
            listed_at = time.time()
            polls += 1
            for item in page["items"]:
                seen.setdefault(item["eventId"], listed_at)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, AUDIT_POLL_SECONDS - (time.monotonic() - began)))
    return polls


async def dispatcher_audit_trail(
    stack: LocalStack, receiver: ReceiverProcess, prefix: str, rate: float, seconds: float
) -> AuditResult:
    """The API on the dispatcher's database, asked for one customer's audit trail four times a second
    while the dispatcher delivers a steady `rate`: when each of that customer's rows is first listed,
    against when the receiver got the delivery. A run of its own: the API's work stays out of the
    latency figures."""
    events = round(rate * seconds)
    run = await prepare_run(stack, receiver, prefix)
    process: DispatcherProcess | None = None
    api: ServiceProcess | None = None
    try:
        process = await start_dispatcher(run)
        api = ServiceProcess(
            "aforo.api",
            "AFORO_API_",
            service_env(stack, run.prefix, run.database, AFORO_SECRETS_ENCRYPTION_KEYS=run.secrets_key),
            LOG_DIR,
        ).start()
        await api.wait_ready(timeout=90)
        await warm_up(run, receiver, process)
        seen: dict[str, float] = {}
        stop = asyncio.Event()
        poller = asyncio.create_task(poll_audit_trail(api, seen, stop))
        produced, _ = await produce_at_rate(run, AUDIT_SEQUENCE_BASE, events, rate)
        await wait_for_receipts(
            receiver, events, process, CpuMeter(), time.monotonic() + LATENCY_DRAIN_SECONDS
        )
        # The last rows get the whole allowance (and a poll more) to show up.
        await asyncio.sleep(TARGET_AUDIT_LAG_MS / 1000 + 2 * AUDIT_POLL_SECONDS)
        stop.set()
        polls = await poller
        ended = time.time()
        audited = {
            event_id_for(sequence)
            for sequence in sequences(AUDIT_SEQUENCE_BASE, events)
            if sequence % CUSTOMERS == AUDITED_CUSTOMER
        }
        all_receipts = await receiver.receipts()
        missing = checked("dispatcher audit trail", all_receipts, set(produced), all_required=False)
        receipts = [receipt for receipt in all_receipts if receipt.event_id in audited]
        lags = sorted(
            (seen.get(receipt.event_id, ended) - receipt.received_at) * 1000 for receipt in receipts
        )
        notes, problems = await stop_dispatcher(process, run, CUSTOMERS + events, complete=not missing)
        if missing:
            problems += (f"{len(missing)} of {events} events were not delivered",)
        return AuditResult(
            rows=len(audited),
            seen=sum(1 for receipt in receipts if receipt.event_id in seen),
            p50_ms=percentile(lags, 0.5) if lags else 0.0,
            p99_ms=percentile(lags, 0.99) if lags else 0.0,
            max_ms=lags[-1] if lags else 0.0,
            polls=polls,
            rate=rate,
            notes=notes,
            problems=problems,
        )
    finally:
        if api is not None:
            await asyncio.to_thread(api.terminate, 30)
        if process is not None:
            process.close()
        await close_run(run)


@dataclass(frozen=True)
class Figures:
    dispatcher: ThroughputResult
    baseline: ThroughputResult
    dispatcher_latency: LatencyResult
    baseline_latency: LatencyResult
    dispatcher_latency_high: LatencyResult
    baseline_latency_high: LatencyResult
    audit_trail: AuditResult
    problems: tuple[str, ...]  # of every dispatcher run


async def bench(
    stack: LocalStack, events: int, rounds: int, rate: float, seconds: float, profile: bool
) -> Figures:
    """Alternate baseline and dispatcher throughput runs (best of each counts), then the latency of
    each side at the same steady rate; each dispatcher run is a fresh process on a fresh database."""
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    receiver = await ReceiverProcess().wait_ready()
    print(
        f"dispatcher: {events} events per throughput run, 1 tenant, {CUSTOMERS} customers x 1 endpoint, "
        f"concurrency {CONCURRENCY} (per_endpoint_concurrency {PER_ENDPOINT_CONCURRENCY} x {CUSTOMERS} "
        f"endpoints, capped by max_in_flight {MAX_IN_FLIGHT})",
        flush=True,
    )
    try:
        dispatcher_runs: list[ThroughputResult] = []
        baseline_runs: list[ThroughputResult] = []
        for round_number in range(1, rounds + 1):
            # A baseline run lasts about a second, so a moment's noise on a shared machine moves it
            # far more than the dispatcher's run of many seconds: it gets a few passes per round.
            for _ in range(BASELINE_PASSES):
                baseline = await baseline_throughput(receiver, events)
                baseline_runs.append(baseline)
                print(baseline.describe(round_number), flush=True)
            dispatcher = await dispatcher_throughput(stack, receiver, f"{prefix}r{round_number}.", events)
            dispatcher_runs.append(dispatcher)
            print(dispatcher.describe(round_number), flush=True)
        latency = await dispatcher_latency(stack, receiver, f"{prefix}lat.", rate, seconds)
        print(latency.describe(), flush=True)
        reference = await baseline_latency(receiver, rate, seconds)
        print(reference.describe(), flush=True)
        latency_high = await dispatcher_latency(stack, receiver, f"{prefix}lathigh.", HIGH_RATE, seconds)
        print(latency_high.describe(), flush=True)
        reference_high = await baseline_latency(receiver, HIGH_RATE, seconds)
        print(reference_high.describe(), flush=True)
        audit = await dispatcher_audit_trail(stack, receiver, f"{prefix}audit.", HIGH_RATE, seconds)
        print(audit.describe(), flush=True)
        if profile:
            LOG_DIR.mkdir(parents=True, exist_ok=True)
            paths = {side: LOG_DIR / f"{prefix}{side}.prof" for side in ("baseline", "dispatcher")}
            profiled_baseline = await baseline_throughput(receiver, events, paths["baseline"])
            profiled = await dispatcher_throughput(
                stack, receiver, f"{prefix}p.", events, paths["dispatcher"]
            )
            print(
                f"dispatcher: under cProfile (not counted): baseline {profiled_baseline.per_second:,.0f} "
                f"deliveries/s, dispatcher {profiled.per_second:,.0f} deliveries/s",
                flush=True,
            )
            for side, path in paths.items():
                if path.exists():
                    print_profile(NAME, f"{side} process", path)
        return Figures(
            max(dispatcher_runs, key=lambda run: run.per_second),
            max(baseline_runs, key=lambda run: run.per_second),
            latency,
            reference,
            latency_high,
            reference_high,
            audit,
            tuple(problem for run in dispatcher_runs for problem in run.problems)
            + latency.problems
            + latency_high.problems
            + audit.problems,
        )
    finally:
        await receiver.close()
        await delete_topics(NAME, stack.kafka_bootstrap, prefix)


def main(argv: list[str]) -> int:
    if argv[:1] == ["receiver"]:
        return receiver_main(argv[1:])
    if argv[:1] == ["baseline-worker"]:
        return baseline_worker(argv[1:])
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=DEFAULT_EVENTS, help="events per throughput run")
    parser.add_argument(
        "--rounds",
        type=int,
        default=DEFAULT_ROUNDS,
        help=f"dispatcher runs, each after {BASELINE_PASSES} baseline runs; the best of each side counts",
    )
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE, help="events/s of the latency phase")
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help="length of the latency phase")
    add_profile_option(parser, "add one cProfile'd throughput run of each side and print the top functions")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.events < 1 or args.rate <= 0 or args.seconds <= 0:
        parser.error("--rounds, --events, --rate and --seconds must be positive")

    with bench_stack() as stack:
        figures = asyncio.run(bench(stack, args.events, args.rounds, args.rate, args.seconds, args.profile))
    dispatcher_rate = figures.dispatcher.per_second
    baseline_rate = figures.baseline.per_second
    ratio = dispatcher_rate / baseline_rate if baseline_rate else 0.0
    latency = figures.dispatcher_latency
    latency_high = figures.dispatcher_latency_high
    cpu_ms = figures.dispatcher.total_cpu_ms_per_delivery
    baseline_cpu_ms = figures.baseline.total_cpu_ms_per_delivery
    cpu_text = "n/a" if cpu_ms is None else f"{cpu_ms:.3f}"
    baseline_cpu_text = "n/a" if baseline_cpu_ms is None else f"{baseline_cpu_ms:.3f}"
    met = (
        ratio >= TARGET_RATIO
        and (cpu_ms is None or cpu_ms <= TARGET_CPU_MS_PER_DELIVERY)
        and figures.dispatcher.complete
        and latency.complete
        and latency_high.complete
        and latency.p99_ms < TARGET_P99_MS
        and latency_high.p99_ms < TARGET_HIGH_RATE_P99_MS
        and figures.audit_trail.met
        and not figures.problems
    )
    verdict = "PASS" if met else "FAIL"
    print(
        f"{NAME}: {dispatcher_rate:.0f} deliveries/s  baseline: {baseline_rate:.0f} deliveries/s  "
        f"ratio: {ratio:.2f}  CPU ms/delivery (dispatcher + database): {cpu_text} "
        f"(baseline {baseline_cpu_text})  p99: {latency.milliseconds(latency.p99_ms)} ms at {args.rate:.0f}/s, "
        f"{latency_high.milliseconds(latency_high.p99_ms)} ms at {HIGH_RATE:.0f}/s  "
        f"audit trail max {figures.audit_trail.max_ms:.0f} ms  "
        f"target >= {TARGET_RATIO:.2f}, <= {TARGET_CPU_MS_PER_DELIVERY} CPU ms, "
        f"p99 < {TARGET_P99_MS:.0f} ms / {TARGET_HIGH_RATE_P99_MS:.0f} ms, "
        f"audit <= {TARGET_AUDIT_LAG_MS:.0f} ms  {verdict}",
        flush=True,
    )
    return 1 if args.strict and verdict == "FAIL" else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
