"""The hostile-input suite (issue #11): payloads that are valid JSON but hold what BSON cannot (integers
beyond 64 bits, keys with NUL, `$` or `.`, lone surrogates, deep nesting, megabyte strings), produced
to the bridge's topic and emitted through the API for one tenant, interleaved with normal events of
another tenant, on real bridge, dispatcher and API processes.

Every normal event is delivered and logged; every hostile one is delivered and logged, or refused up
front with a 4xx, or dead-lettered with a reason; the consumer groups commit to the end; a restart
sends nothing again; no commit loop crashes.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aforo.shared.serde import MAX_PAYLOAD_DEPTH
from tests.support.api_harness import ApiUnderTest, start_api
from tests.support.kafka import create_topics, produce
from tests.support.processes import ServiceProcess
from tests.support.receiver import Receiver
from tests.support.stack import LocalStack, service_env

HOSTILE_KEYS = st.sampled_from(
    ["a\x00b", "$where", "a.b", "$", ".", "\ud800", "\udfff", "", "é", "🚀", "\u202e"]
)
LEAVES = st.one_of(
    st.integers(min_value=-(2**200), max_value=2**200),
    st.sampled_from([2**63, -(2**63) - 1, 2**64, 1180591620717411303424, -(10**40)]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e308, -1e308, 5e-324, -0.0, 1.7976931348623157e308]),
    st.text(st.characters(codec=None, exclude_categories=()), max_size=20),
    st.booleans(),
    st.none(),
)
VALUES = st.recursive(
    LEAVES,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(HOSTILE_KEYS | st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=25,
)


def hostile_payloads(count: int) -> list[dict[str, Any]]:
    """`count` generated hostile objects (hypothesis, derandomized: the same ones every run)."""
    drawn: list[dict[str, Any]] = []

    @settings(
        max_examples=count,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.dictionaries(HOSTILE_KEYS, VALUES, min_size=1, max_size=5))
    def collect(value: dict[str, Any]) -> None:
        drawn.append(value)

    collect()
    return drawn[:count]


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def edge_payloads() -> list[dict[str, Any]]:
    """The reproductions of the issue, and the edges the generator may not reach."""
    return [
        {"big": 1180591620717411303424},
        {"a\x00b": 1},
        {"$set": {"a.b": {"$where": "x"}}},
        {"lone": "\ud800", "\udfff": "key"},
        {"deep": nested(MAX_PAYLOAD_DEPTH - 1)},  # the payload object plus this: exactly the limit
        {"too_deep": nested(MAX_PAYLOAD_DEPTH + 50)},  # past it: dead-lettered, nothing else held up
        {},
        {"huge": "x" * (900 * 1024)},  # past the bridge's 512 KiB record limit: dead-lettered as oversized
        {"large": "ü" * 60_000},  # 360 KB once escaped: within the limit, delivered
        {"floats": [5e-324, 1e308, -0.0, 0.1]},
    ]


def encode(value: Any) -> bytes:
    """Valid JSON for anything drawn: ASCII escapes carry the lone surrogates and NULs."""
    return json.dumps(value, ensure_ascii=True, separators=(",", ":")).encode()


async def committed_to_end(
    bootstrap: str, group: str, topics: list[str]
) -> dict[TopicPartition, tuple[int, int]]:
    """Per partition of `topics` whose committed offset is behind its end: (committed, end)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in (consumer.partitions_for_topic(topic) or set())
        ]
        if not partitions:
            await consumer.topics()
            partitions = [
                TopicPartition(topic, p)
                for topic in topics
                for p in (consumer.partitions_for_topic(topic) or set())
            ]
        ends = await consumer.end_offsets(partitions)
        behind = {}
        for partition, end in ends.items():
            offset = committed.get(partition)
            position = -1 if offset is None else offset.offset
            if end > 0 and position < end:
                behind[partition] = (position, end)
        return behind
    finally:
        await consumer.stop()
        await admin.close()


async def dead_letters(bootstrap: str, topic: str) -> list[Any]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        records: list[Any] = []
        while True:
            batch = await consumer.getmany(timeout_ms=1500)
            if not batch:
                return records
            for items in batch.values():
                records.extend(items)
    finally:
        await consumer.stop()


async def test_hostile_payloads_never_hold_up_another_tenant_and_are_delivered_or_dead_lettered(
    local_stack: LocalStack, service_log_dir: Path
) -> None:
    hostile_bridge = [*edge_payloads(), *hostile_payloads(40)]
    hostile_emits = [*edge_payloads()[:5], *hostile_payloads(60)[40:]]
    receiver = await Receiver(service_log_dir).start()
    processes: dict[str, ServiceProcess] = {}
    try:
        async with start_api(local_stack, service_log_dir) as api:
            groups = {
                "bridge": f"{api.prefix}bridge",
                "dispatcher": f"{api.prefix}dispatcher",
                "retry": f"{api.prefix}dispatcher-retry",
            }
            env = service_env(
                local_stack,
                api.prefix,
                api.database,
                AFORO_SECRETS_ENCRYPTION_KEYS=api.encryption_key,
                AFORO_BRIDGE_SOURCE_TOPIC_PREFIX=api.prefix,
                AFORO_BRIDGE_METADATA_MAX_AGE_MS="1000",
                AFORO_BRIDGE_CONSUMER_GROUP=groups["bridge"],
                AFORO_DISPATCHER_CONSUMER_GROUP=groups["dispatcher"],
                AFORO_DISPATCHER_RETRY_CONSUMER_GROUP=groups["retry"],
            )
            source_topic = f"{api.prefix}billing.invoice.finalized"
            await create_topics(local_stack.kafka_bootstrap, [source_topic])

            def start(name: str) -> ServiceProcess:
                module, env_prefix = {
                    "bridge": ("aforo.bridge", "AFORO_BRIDGE_"),
                    "dispatcher": ("aforo.dispatcher", "AFORO_DISPATCHER_"),
                }[name]
                return ServiceProcess(module, env_prefix, env, service_log_dir).start()

            processes = {name: start(name) for name in ("bridge", "dispatcher")}
            await asyncio.gather(*(p.wait_ready(timeout=90) for p in processes.values()))
            for tenant in ("tA", "tB"):
                registered = await api.call(
                    "POST",
                    "/api/v1/webhook-endpoints",
                    tenant=tenant,
                    json={
                        "endCustomerId": "c1",
                        "url": receiver.hook_url(tenant),
                        "events": ["*"],
                        "secret": f"whsec_{tenant}_hostile_suite_secret",
                    },
                )
                assert registered.status == 201, registered.body
            defined = await api.call(
                "POST",
                "/api/v1/admin/event-definitions",
                tenant="tA",
                json={
                    "eventType": "HOSTILE_EMIT",
                    "displayName": "Hostile emit",
                    "category": "Custom",
                    "severity": "INFO",
                    "defaultChannels": ["WEBHOOK"],
                },
            )
            assert defined.status == 201, defined.body
            await asyncio.sleep(2.0)  # the documented bound for configuration to reach the pipeline

            # Interleave: each hostile record of tenant A is followed by a normal one of tenant B.
            records: list[bytes] = []
            hostile_ids: dict[str, bytes] = {}
            normal_ids: list[str] = []
            for index, payload in enumerate(hostile_bridge):
                event_id = f"hostile-{index}"
                raw = encode({"tenantId": "tA", "customerId": "c1", "eventId": event_id, "data": payload})
                hostile_ids[event_id] = raw
                normal_id = f"normal-{index}"
                normal_ids.append(normal_id)
                records += [
                    raw,
                    encode({"tenantId": "tB", "customerId": "c1", "eventId": normal_id, "amountDue": index}),
                ]
            await produce(local_stack.kafka_bootstrap, source_topic, records)

            emitted: dict[str, int] = {}
            refused: list[int] = []
            for payload in hostile_emits:
                reply = await api.call(
                    "POST",
                    "/api/v1/notification-event-definitions/HOSTILE_EMIT/emit",
                    tenant="tA",
                    data=encode({"customerId": "c1", "payload": payload}),
                    headers={"Content-Type": "application/json"},
                )
                assert reply.status < 500, (reply.status, reply.body[:300])
                if reply.status == 202:
                    emitted[reply.headers["X-Aforo-Event-Id"]] = reply.status
                else:
                    assert "error" in reply.json(), reply.body[:300]  # refused up front, in words
                    refused.append(reply.status)

            # Tenant B: every normal event delivered and logged, within seconds.
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                rows_b = [r async for r in api_rows(api, "tB")]
                if {r["eventId"] for r in rows_b if r["status"] == "DELIVERED"} >= set(normal_ids):
                    break
                await asyncio.sleep(0.5)
            assert {r["eventId"] for r in rows_b if r["status"] == "DELIVERED"} == set(normal_ids)

            # Tenant A: delivered and logged, or dead-lettered with a reason.
            expected_a = set(hostile_ids) | set(emitted)
            deadline = time.monotonic() + 90
            while True:
                rows_a = [r async for r in api_rows(api, "tA")]
                delivered_a = {r["eventId"] for r in rows_a if r["status"] == "DELIVERED"}
                bridge_dlq = await dead_letters(local_stack.kafka_bootstrap, api.topics.bridge_dead_letter)
                dispatch_dlq = await dead_letters(
                    local_stack.kafka_bootstrap, api.topics.dispatch_dead_letter
                )
                dead_bridge = {
                    event_id
                    for event_id, raw in hostile_ids.items()
                    if any(record.value == raw and reason_of(record) for record in bridge_dlq)
                }
                dead_dispatch = {event_id_of(record) for record in dispatch_dlq if reason_of(record)}
                settled = delivered_a | dead_bridge | dead_dispatch
                if settled >= expected_a or time.monotonic() > deadline:
                    break
                await asyncio.sleep(1.0)
            assert expected_a - settled == set(), (
                f"neither delivered nor dead-lettered: {sorted(expected_a - settled)}"
            )
            assert "hostile-0" in delivered_a  # the 70-bit integer of the issue is delivered and logged
            assert "hostile-1" in delivered_a  # and the key with a NUL
            assert "hostile-5" in dead_bridge  # nested past the limit: a dead letter, not a stuck consumer
            received_a = Counter(
                json.loads(r["body"])["eventId"] for r in await receiver.received("tA") if r["status"] == 200
            )
            assert set(received_a) == delivered_a
            received_b = Counter(
                json.loads(r["body"])["eventId"] for r in await receiver.received("tB") if r["status"] == 200
            )
            assert set(received_b) == set(normal_ids)
            for logged in (rows_a, rows_b):
                assert all(
                    count == 1
                    for count in Counter(r["eventId"] for r in logged if r["status"] == "DELIVERED").values()
                )

            # The consumer groups commit to the end (within a few commit intervals).
            bootstrap = local_stack.kafka_bootstrap
            inputs = [api.topics.system_events, api.topics.custom_events]
            deadline = time.monotonic() + 30
            while True:
                behind = {
                    **await committed_to_end(bootstrap, groups["bridge"], [source_topic]),
                    **await committed_to_end(bootstrap, groups["dispatcher"], inputs),
                }
                if not behind or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
            assert behind == {}

            # A restart sends nothing again.
            sent_before = len(await receiver.received("tA")) + len(await receiver.received("tB"))
            for name in ("bridge", "dispatcher"):
                assert await asyncio.to_thread(processes[name].terminate, 30) == 0
                processes[name] = start(name)
            await asyncio.gather(*(p.wait_ready(timeout=90) for p in processes.values()))
            await asyncio.sleep(5.0)
            assert len(await receiver.received("tA")) + len(await receiver.received("tB")) == sent_before

            logs = "".join(p.log_text() for p in processes.values())
            assert '"commit_crashed"' not in logs
            assert "Traceback" not in logs
    finally:
        for process in processes.values():
            process.close()
        receiver.stop()


async def api_rows(api: ApiUnderTest, tenant: str) -> Any:
    """The tenant's delivery log, read from the database the API serves it from."""
    async for row in api.mongo.collection("delivery_logs").find({"tenantId": tenant}, {"envelopeJson": 0}):
        yield row


def reason_of(record: Any) -> str | None:
    for name, value in record.headers or ():
        if name == "aforo-dlq-reason":
            return str(value.decode())
    return None


def event_id_of(record: Any) -> str | None:
    try:
        return str(json.loads(record.value)["eventId"])
    except (ValueError, KeyError, TypeError):
        return None
