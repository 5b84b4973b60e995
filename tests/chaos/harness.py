"""Drives one fault scenario on the chaos stack: configure a tenant through the API, push producer
records (and manual emits) at a steady pace, inject the fault while deliveries and retries are in
flight, wait until the system is quiet, and build the scenario's ledger."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from pymongo.errors import PyMongoError

from aforo.api.auth import AuthConfig
from aforo.api.dev_tokens import mint_dev_token
from aforo.shared.mongo import MongoStore
from aforo.shared.serde import dumps_json, loads_json
from tests.chaos.ledger import FINAL_STATES, Ledger, ReceivedRequest, build_ledger
from tests.support.chaos_stack import SERVICES, ChaosStack
from tests.support.receiver import Receiver
from tests.support.stack import TEST_JWT_SECRET

SOURCE_TOPIC = "billing.invoice.finalized"
CUSTOM_EVENT = "CHAOS_INVOICE_SEEN"
"""The CUSTOM event the trigger derives from every invoice in scenarios that exercise the trigger."""

QUIET_DEADLINE_SECONDS = 150.0
"""How long after the fault the system has to become quiet: above the reconciler's documented
bound (2 x the largest tier a delivery could be on, at least 60 s), so a stranded delivery the
reconciler would take up still counts as recovered, and one it never takes up shows as non-final."""

OBSERVE_AFTER_QUIET_SECONDS = 2.0
"""Once everything is final, keep listening this long: a late duplicate would arrive here."""

LOG_NEEDLES = ('"level": "warning"', '"level": "error"', "Traceback", "failed")


@dataclass
class Load:
    """What a scenario pushes through the pipeline."""

    records: int
    rate_per_second: float = 50.0
    emits: int = 0
    """Manual emits through the API (of the CUSTOM event: needs `custom_rule`), spread over the records' window."""
    custom_rule: bool = False
    """A CUSTOM definition whose rule matches every invoice: each record is two deliveries."""
    fail_every: int = 25
    """Every n-th record's deliveries are refused on every attempt: they must end FAILED."""
    receiver_plan: dict[str, Any] = field(default_factory=lambda: {"failFirst": 1})


@dataclass
class Run:
    """One scenario in progress: the tenant, what was sent, and the fault's timeline."""

    stack: ChaosStack
    receiver: Receiver
    tenant: str
    hook: str
    load: Load
    endpoint_id: str = ""
    expected: set[str] = field(default_factory=set)
    expected_failures: set[str] = field(default_factory=set)
    key_of_event_id: dict[str, str] = field(default_factory=dict)
    emit_attempts: int = 0
    started_at: float = 0.0
    fault_ended_at: float | None = None
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """Broken promises seen during the fault (e.g. a /readyz that did not name the missing dependency)."""
    allowed_duplicates: int = 0
    """Duplicates at the receiver the scenario documents as possible (0 unless said why)."""
    left_down: set[str] = field(default_factory=set)
    """Processes the fault stops for good (a dispatcher replica whose partitions move to the other)."""
    pids_before: dict[str, int | None] = field(default_factory=dict)
    restarted: set[str] = field(default_factory=set)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started_at

    async def until_elapsed(self, seconds: float) -> None:
        """Wait for a point of the scenario's timeline (seconds since the first record)."""
        await asyncio.sleep(max(0.0, seconds - self.elapsed))

    def fault_ended(self) -> None:
        self.fault_ended_at = time.monotonic()


FaultPlan = Callable[[Run], Awaitable[None]]


class Api:
    """The tenant's administrator, through the real API process of the stack."""

    def __init__(self, stack: ChaosStack, tenant: str) -> None:
        self.stack = stack
        self.tenant = tenant
        auth = AuthConfig(mode="hs256", hs256_secret=TEST_JWT_SECRET)
        token = mint_dev_token(auth, tenant_id=tenant, roles=["ADMIN"])
        self.headers = {"Authorization": f"Bearer {token}", "X-Tenant-Id": tenant}

    async def call(self, method: str, path: str, body: Any = None, timeout: float = 10) -> tuple[int, Any]:
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                method,
                f"{self.stack.url('api')}{path}",
                json=body,
                headers=self.headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response,
        ):
            raw = await response.read()
            return response.status, loads_json(raw) if raw else None


async def configure(run: Run, api: Api) -> None:
    """The endpoint (and the CUSTOM rule), then a canary through the whole pipeline: once it is
    delivered, every process has the configuration (no sleeping for a propagation bound)."""
    status, body = await api.call(
        "POST",
        "/api/v1/webhook-endpoints",
        {
            "endCustomerId": "c1",
            "url": run.receiver.hook_url(run.hook),
            "events": ["*"] if run.load.custom_rule else ["INVOICE_GENERATED"],
            "secret": "whsec_chaos_secret_value",
            "maxRetryAttempts": 3,
            "initialBackoffSeconds": 1.0,
        },
    )
    assert status == 201, body
    run.endpoint_id = body["endpointId"]
    if run.load.custom_rule:
        status, body = await api.call(
            "POST",
            "/api/v1/admin/event-definitions",
            {
                "eventType": CUSTOM_EVENT,
                "displayName": "Invoice seen (chaos)",
                "category": "Billing",
                "severity": "INFO",
                "defaultChannels": ["WEBHOOK"],
                "triggerRule": {
                    "sourceEvents": ["INVOICE_GENERATED"],
                    "match": {"field": "amountDue", "op": "gte", "value": 0},
                },
            },
        )
        assert status == 201, body
    await run.receiver.plan(run.hook, **run.load.receiver_plan)

    canary = f"{run.tenant}-canary"
    producer = BillingProducer(run.stack)
    try:
        await producer.send(invoice(run.tenant, canary))
    finally:
        await producer.close()
    wanted = {f"INVOICE_GENERATED/{canary}"} | (
        {f"{CUSTOM_EVENT}/{canary}"} if run.load.custom_rule else set()
    )
    deadline = time.monotonic() + 90
    while True:
        got = {request.key for request in await received(run) if 200 <= request.status <= 299}
        if wanted <= got:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"canary not delivered in 90 s: wanted {wanted}, got {got}")
        await asyncio.sleep(0.2)


def invoice(tenant: str, event_id: str) -> dict[str, Any]:
    return {
        "tenantId": tenant,
        "customerId": "c1",
        "eventId": event_id,
        "chaosKey": event_id,
        "invoiceId": event_id,
        "amountDue": 100,
        "currency": "EUR",
    }


async def start_producer(stack: ChaosStack) -> AIOKafkaProducer:
    deadline = time.monotonic() + 120
    while True:
        producer = AIOKafkaProducer(
            bootstrap_servers=stack.kafka_bootstrap, acks="all", enable_idempotence=True, linger_ms=5
        )
        try:
            await producer.start()
            return producer
        except KafkaError:
            with contextlib.suppress(KafkaError):
                await producer.stop()
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


class BillingProducer:
    """The billing platform's producer: sends until the broker acknowledges, with a new producer
    after a refusal (aiokafka's idempotent producer never recovers from the sequence gap a broker
    outage leaves), so a record may be sent twice, with the same eventId, as a real producer would."""

    def __init__(self, stack: ChaosStack) -> None:
        self.stack = stack
        self.producer: AIOKafkaProducer | None = None

    async def send(self, value: dict[str, Any], timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.producer is None:
                self.producer = await start_producer(self.stack)
            try:
                await self.producer.send_and_wait(
                    SOURCE_TOPIC, dumps_json(value), key=str(value["customerId"]).encode()
                )
                return
            except KafkaError:
                if time.monotonic() > deadline:
                    raise
                await self.close()
                await asyncio.sleep(0.5)

    async def close(self) -> None:
        if self.producer is not None:
            with contextlib.suppress(KafkaError):
                await self.producer.stop()
            self.producer = None


async def push_load(run: Run, api: Api) -> None:
    """Records (and emits) at the load's pace; every record is expected, an emit once accepted (202)."""
    load = run.load
    producer = BillingProducer(run.stack)
    for index in range(load.records):
        event_id = f"{run.tenant}-{index:05d}"
        run.key_of_event_id[event_id] = f"INVOICE_GENERATED/{event_id}"
        run.expected.add(f"INVOICE_GENERATED/{event_id}")
        if load.custom_rule:
            run.key_of_event_id[f"{event_id}:{CUSTOM_EVENT}"] = f"{CUSTOM_EVENT}/{event_id}"
            run.expected.add(f"{CUSTOM_EVENT}/{event_id}")
        if load.fail_every and index % load.fail_every == load.fail_every - 1:
            run.expected_failures.add(f"INVOICE_GENERATED/{event_id}")
            if load.custom_rule:
                run.expected_failures.add(f"{CUSTOM_EVENT}/{event_id}")
    plan = dict(load.receiver_plan)
    plan["failEvents"] = sorted(
        event_id for event_id, key in run.key_of_event_id.items() if key in run.expected_failures
    )
    await run.receiver.plan(run.hook, **plan)

    emits_every = load.records // load.emits if load.emits else 0
    emit_tasks: list[asyncio.Task[None]] = []
    run.started_at = time.monotonic()
    try:
        for index in range(load.records):
            await run.until_elapsed(index / load.rate_per_second)
            await producer.send(invoice(run.tenant, f"{run.tenant}-{index:05d}"))
            if emits_every and index % emits_every == 0 and len(emit_tasks) < load.emits:
                emit_tasks.append(asyncio.create_task(emit(run, api, f"{run.tenant}-emit-{index:05d}")))
        await asyncio.gather(*emit_tasks)
    finally:
        await producer.close()


async def emit(run: Run, api: Api, key: str) -> None:
    """One manual emit; expected only if the API accepted it (a refused or cut call is the client's
    to retry, and a retry would be a new event)."""
    run.emit_attempts += 1
    try:
        status, _ = await api.call(
            "POST",
            f"/api/v1/notification-event-definitions/{CUSTOM_EVENT}/emit",
            {"customerId": "c1", "payload": {"chaosKey": key, "amountDue": 1}},
            timeout=15,
        )
    except (aiohttp.ClientError, TimeoutError):
        return
    if status == 202:
        run.expected.add(f"{CUSTOM_EVENT}/{key}")


async def received(run: Run) -> list[ReceivedRequest]:
    requests = []
    for item in await run.receiver.received(run.hook):
        body = loads_json(item["body"].encode())
        key = f"{body.get('eventType')}/{(body.get('payload') or {}).get('chaosKey')}"
        event_id = str(item["headers"].get("X-Aforo-Event-Id", ""))
        requests.append(ReceivedRequest(key, event_id, int(item["status"])))
    return requests


ROW_FIELDS = {"_id": 0, "eventId": 1, "attempt": 1, "status": 1, "error": 1, "responseStatus": 1}


async def trail_of(run: Run, mongo: MongoStore) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The tenant's `delivery_state` documents and `delivery_logs` rows (without the stored bodies)."""
    query = {"tenantId": run.tenant}
    states = [s async for s in mongo.collection("delivery_state").find(query, ROW_FIELDS)]
    rows = [r async for r in mongo.collection("delivery_logs").find(query, ROW_FIELDS)]
    return states, rows


async def wait_quiet(run: Run, mongo: MongoStore) -> bool:
    """Until every expected delivery's last row is final and none is owed an attempt; False at the deadline."""
    assert run.fault_ended_at is not None
    deadline = run.fault_ended_at + QUIET_DEADLINE_SECONDS
    while time.monotonic() < deadline:
        requests = await received(run)
        for request in requests:
            run.key_of_event_id.setdefault(request.event_id, request.key)
        try:
            states, rows = await trail_of(run, mongo)
        except PyMongoError as error:  # the database may still be coming back
            run.notes.append(f"ledger read failed once: {type(error).__name__}")
            await asyncio.sleep(1)
            continue
        # `delivery_state` holds only deliveries owed another attempt; the rows are the trail of all.
        open_states = [
            s for s in states if s["eventId"] in run.key_of_event_id and s["status"] not in FINAL_STATES
        ]
        latest: dict[str, dict[str, Any]] = {}
        for row in rows:
            key = run.key_of_event_id.get(row["eventId"])
            if key is not None and int(row.get("attempt") or 0) >= int(
                latest.get(key, {}).get("attempt") or 0
            ):
                latest[key] = row
        final_rows = {key for key, row in latest.items() if row["status"] in FINAL_STATES}
        if run.expected <= final_rows and not open_states:
            return True
        await asyncio.sleep(0.5)
    return False


async def event_ids_on(stack: ChaosStack, topic: str, id_prefix: str) -> set[str]:
    """The eventIds (header) of a topic's records that start with the prefix, read up to its end."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=stack.kafka_bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        partitions = consumer.assignment()
        while not partitions:
            await consumer.getmany(timeout_ms=200)
            partitions = consumer.assignment()
        ends = await consumer.end_offsets(list(partitions))
        found: set[str] = set()
        deadline = time.monotonic() + 60
        while [p for p, end in ends.items() if await consumer.position(p) < end]:
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}: not read to its end in 60 s")
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    event_id = dict(record.headers or ()).get("eventId", b"").decode()
                    if event_id.startswith(id_prefix):
                        found.add(event_id)
        return found
    finally:
        await consumer.stop()


async def stream_gaps(run: Run) -> list[str]:
    """Item 3: the bridge and the trigger resumed without gaps, whatever the dispatcher did. Every
    record produced is on the SYSTEM-event topic, and (with the rule) its CUSTOM event on its topic."""
    produced = [f"{run.tenant}-{index:05d}" for index in range(run.load.records)]
    problems = []
    translated = await event_ids_on(run.stack, "aforo.events.system", run.tenant)
    missing = [event_id for event_id in produced if event_id not in translated]
    if missing:
        problems.append(
            f"bridge gap: {len(missing)} records never published as SYSTEM events: {missing[:10]}"
        )
    if run.load.custom_rule:
        derived = await event_ids_on(run.stack, "aforo.events.custom", run.tenant)
        missing = [event_id for event_id in produced if f"{event_id}:{CUSTOM_EVENT}" not in derived]
        if missing:
            problems.append(f"trigger gap: {len(missing)} SYSTEM events never derived: {missing[:10]}")
    return problems


async def ledger_of(run: Run, mongo: MongoStore, scenario: str) -> Ledger:
    requests = await received(run)
    for request in requests:
        run.key_of_event_id.setdefault(request.event_id, request.key)
    states, rows = await trail_of(run, mongo)
    canary = f"{run.tenant}-canary"
    keys = {event_id: key for event_id, key in run.key_of_event_id.items() if not event_id.startswith(canary)}
    return build_ledger(
        scenario,
        expected=run.expected,
        expected_failures=run.expected_failures,
        received=[request for request in requests if request.key in run.expected],
        rows=rows,
        states=states,
        key_of_event_id=keys,
    )


def summarize_log(lines: list[str]) -> list[str]:
    """Warning and error lines grouped by event, topic and exception: count, offsets, first time."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for line in lines:
        try:
            entry = loads_json(line.encode())
        except ValueError:
            entry = {"event": line[:200]}
        if not isinstance(entry, dict):
            continue
        exception = str(entry.get("exception") or entry.get("error") or "").strip().splitlines()
        cause = exception[-1][:160] if exception else ""
        key = (str(entry.get("event")), str(entry.get("topic", "")), cause)
        groups.setdefault(key, []).append(entry)
    summaries = []
    for (event, topic, cause), entries in groups.items():
        offsets = sorted(int(e["offset"]) for e in entries if isinstance(e.get("offset"), int))
        where = f" {topic} offsets {offsets[0]}..{offsets[-1]}" if offsets else (f" {topic}" if topic else "")
        summaries.append(f"{event} x{len(entries)}{where} from {entries[0].get('timestamp')}: {cause}")
    return summaries


def watched(run: Run) -> list[str]:
    """The processes that must be ready again after the fault."""
    return [name for name in (*SERVICES, *run.stack.extras) if name not in run.left_down]


async def run_scenario(
    stack: ChaosStack,
    receiver: Receiver,
    mongo: MongoStore,
    scenario: str,
    load: Load,
    fault: FaultPlan,
    allowed_duplicates: int = 0,
) -> tuple[Ledger, Run]:
    tenant = f"chaos-{scenario}-{uuid.uuid4().hex[:6]}"
    run = Run(stack, receiver, tenant, tenant, load, allowed_duplicates=allowed_duplicates)
    api = Api(stack, tenant)
    await stack.wait_ready(watched(run))
    await configure(run, api)
    run.pids_before = {name: stack.pid(name) for name in SERVICES}
    log_offsets = stack.log_offsets()

    pushing = asyncio.create_task(push_load(run, api), name="chaos-load")
    while run.started_at == 0.0 and not pushing.done():
        await asyncio.sleep(0.01)
    try:
        await fault(run)
    finally:
        if run.fault_ended_at is None:
            run.fault_ended()
    assert run.fault_ended_at is not None
    await stack.wait_ready(watched(run))
    ready_after = time.monotonic() - run.fault_ended_at
    await pushing
    quiet = await wait_quiet(run, mongo)
    settled_after = time.monotonic() - run.fault_ended_at
    if quiet:
        await asyncio.sleep(OBSERVE_AFTER_QUIET_SECONDS)  # a window to catch late duplicates, not a wait
    ledger = await ledger_of(run, mongo, scenario)
    run.problems.extend(await stream_gaps(run))

    notes = list(run.notes)
    if not quiet:
        notes.append(f"not quiet {QUIET_DEADLINE_SECONDS:.0f} s after the fault")
    if not quiet or ledger.problems(run.allowed_duplicates):
        for name in (*SERVICES, *stack.extras):
            lines = stack.log_lines_since(name, log_offsets.get(name, 0), LOG_NEEDLES)
            notes.extend(f"{name} log: {summary}" for summary in summarize_log(lines))
    crashed = [
        name
        for name in SERVICES
        if name not in run.restarted
        and name not in run.left_down
        and run.pids_before.get(name) != stack.pid(name)
    ]
    if crashed:
        run.problems.append(f"processes that did not survive the fault without a restart: {crashed}")
    final = dataclasses.replace(
        ledger,
        recovery_seconds=ready_after,
        settled_seconds=settled_after if quiet else None,
        notes=notes,
    )
    return final, run
