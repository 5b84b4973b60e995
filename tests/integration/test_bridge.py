"""The bridge on the real broker: every default route, verbatim payloads, stable ids, the
dead-letter topic for each kind of bad input, and at-least-once delivery across a SIGKILL."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka.partitioner import DefaultPartitioner

from aforo.bridge.routes import load_routes
from aforo.shared.serde import dumps_json
from tests.support.kafka import TopicReader, create_topics, produce, unique_prefix
from tests.support.processes import ServiceProcess
from tests.support.stack import LocalStack

ROUTES = load_routes()
ENVELOPE_FIELDS = {
    "eventId",
    "eventType",
    "category",
    "severity",
    "tenantId",
    "customerId",
    "occurredAt",
    "payload",
}


def bridge_env(stack: LocalStack, prefix: str, **extra: str) -> dict[str, str]:
    return {
        "AFORO_KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap,
        "AFORO_MONGO_URI": stack.mongo_uri,
        "AFORO_TOPIC_PREFIX": prefix,
        "AFORO_BRIDGE_SOURCE_TOPIC_PREFIX": prefix,
        "AFORO_BRIDGE_METADATA_MAX_AGE_MS": "1000",
        "AFORO_SHUTDOWN_GRACE_SECONDS": "10",
        **extra,
    }


async def start_bridge(stack: LocalStack, prefix: str, log_dir: Path, **extra: str) -> ServiceProcess:
    bridge = ServiceProcess(
        "aforo.bridge", "AFORO_BRIDGE_", bridge_env(stack, prefix, **extra), log_dir
    ).start()
    await bridge.wait_ready()
    return bridge


def values(records: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(record.value) for record in records]


def assert_default_partitioning(reader: TopicReader) -> None:
    """The bridge partitions its outputs itself: each must sit where Kafka's default partitioner
    (murmur2 of the `tenantId:customerId` key) puts it, as every consumer of the key expects."""
    partitions = sorted(reader.consumer.partitions_for_topic(reader.topic) or ())
    assert partitions
    default = DefaultPartitioner()
    for record in reader.records:
        assert record.partition == default(record.key, partitions, partitions), record.key


async def test_every_default_route_produces_the_right_envelopes(
    local_stack: LocalStack, service_log_dir: Path
) -> None:
    prefix = unique_prefix()
    bootstrap = local_stack.kafka_bootstrap
    await create_topics(bootstrap, [f"{prefix}{topic}" for topic in ROUTES])
    bridge = await start_bridge(local_stack, prefix, service_log_dir)
    try:
        for index, topic in enumerate(ROUTES):
            payload = {"tenantId": "t1", "customerId": f"c{index}", "sourceTopic": topic, "amount": index}
            await produce(bootstrap, f"{prefix}{topic}", [dumps_json(payload)])
        expected_system = sum(1 for route in ROUTES.values() if route.system_event)
        expected_widget = sum(1 for route in ROUTES.values() if route.widget_event)
        async with TopicReader(bootstrap, f"{prefix}events.system") as system_reader:
            system = values(await system_reader.until(lambda got: len(got) >= expected_system))
            assert_default_partitioning(system_reader)
        async with TopicReader(bootstrap, f"{prefix}events.widget") as widget_reader:
            widget = values(await widget_reader.until(lambda got: len(got) >= expected_widget))
            assert_default_partitioning(widget_reader)
        assert len(system) == expected_system
        assert len(widget) == expected_widget
        system_by_topic = {envelope["payload"]["sourceTopic"]: envelope for envelope in system}
        widget_by_topic = {envelope["payload"]["sourceTopic"]: envelope for envelope in widget}
        for topic, route in ROUTES.items():
            if route.system_event is None:
                assert topic not in system_by_topic
            else:
                envelope = system_by_topic[topic]
                assert envelope["eventType"] == route.system_event.event_type
                assert envelope["category"] == route.system_event.category.value
                assert envelope["severity"] == route.system_event.severity.value
            if route.widget_event is None:
                assert topic not in widget_by_topic
            else:
                assert widget_by_topic[topic]["eventType"] == route.widget_event.event_type
            for envelope in (system_by_topic.get(topic), widget_by_topic.get(topic)):
                if envelope is not None:
                    assert set(envelope) == ENVELOPE_FIELDS
                    assert envelope["tenantId"] == "t1"
                    assert envelope["customerId"] == envelope["payload"]["customerId"]
                    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", envelope["occurredAt"])
    finally:
        assert bridge.terminate() == 0


async def test_payload_round_trips_byte_for_byte_and_derived_ids_are_stable(
    local_stack: LocalStack, service_log_dir: Path
) -> None:
    prefix = unique_prefix()
    bootstrap = local_stack.kafka_bootstrap
    topic = f"{prefix}billing.invoice.finalized"
    await create_topics(bootstrap, [topic])
    payload = {
        "tenantId": "t1",
        "customerId": "c1",
        "amountDue": 123456789012345678901234567890,
        "tax": 0.1,
        "tiny": 1e-300,
        "negative": -42.125,
        "flag": False,
        "missing": None,
        "name": "Zoë — 請求書 🚀",
        "lines": [{"sku": "a", "qty": 3, "price": {"amount": 19.99, "currency": "EUR"}}, [1, [2, [3]]]],
    }
    raw = dumps_json(payload)
    await produce(bootstrap, topic, [raw])
    first = await start_bridge(local_stack, prefix, service_log_dir)
    try:
        async with TopicReader(bootstrap, f"{prefix}events.system") as reader:
            records = await reader.until(lambda got: len(got) >= 1)
    finally:
        assert first.terminate() == 0
    envelope_bytes = records[0].value
    assert envelope_bytes.endswith(b'"payload":' + raw + b"}")
    assert json.loads(envelope_bytes)["payload"] == payload
    first_id = json.loads(envelope_bytes)["eventId"]

    # A second bridge in another consumer group re-consumes the same record: same derived eventId.
    second = await start_bridge(local_stack, prefix, service_log_dir, AFORO_BRIDGE_CONSUMER_GROUP="replay")
    try:
        async with TopicReader(bootstrap, f"{prefix}events.system") as reader:
            records = await reader.until(lambda got: len(got) >= 2)
    finally:
        assert second.terminate() == 0
    assert [json.loads(record.value)["eventId"] for record in records] == [first_id, first_id]
    assert records[1].value == envelope_bytes


BAD_INPUTS: list[tuple[str, str, bytes]] = [
    ("invalid_json", "billing.invoice.finalized", b"{not json"),
    ("not_an_object", "billing.invoice.finalized", b"[1,2,3]"),
    ("missing_tenant_id", "billing.invoice.finalized", b'{"customerId":"c1"}'),
    ("missing_tenant_id", "billing.invoice.finalized", b'{"tenantId":"","customerId":"c1"}'),
    ("missing_customer_id", "billing.invoice.finalized", b'{"tenantId":"t1"}'),
    ("missing_customer_id", "billing.invoice.finalized", b'{"tenantId":"t1","customerId":""}'),
    (
        "oversized",
        "billing.invoice.finalized",
        b'{"tenantId":"t1","customerId":"c1","pad":"' + b"x" * 5000 + b'"}',
    ),
    ("unmapped_topic", "billing.not.mapped", b'{"tenantId":"t1","customerId":"c1"}'),
    (
        "invalid_occurred_at",
        "billing.invoice.finalized",
        b'{"tenantId":"t1","customerId":"c1","occurredAt":"soon"}',
    ),
    ("empty_record", "billing.invoice.finalized", b""),
]


async def test_each_bad_input_goes_to_the_dead_letter_topic_and_the_stream_keeps_flowing(
    local_stack: LocalStack, service_log_dir: Path
) -> None:
    prefix = unique_prefix()
    bootstrap = local_stack.kafka_bootstrap
    await create_topics(bootstrap, [f"{prefix}billing.invoice.finalized", f"{prefix}billing.not.mapped"])
    bridge = await start_bridge(local_stack, prefix, service_log_dir, AFORO_BRIDGE_MAX_RECORD_BYTES="4096")
    try:
        for _, topic, value in BAD_INPUTS:
            await produce(bootstrap, f"{prefix}{topic}", [value], key=b"k1")
        good = {"tenantId": "t1", "customerId": "c1", "after": "bad input"}
        await produce(bootstrap, f"{prefix}billing.invoice.finalized", [dumps_json(good)])
        async with TopicReader(bootstrap, f"{prefix}dlq.bridge") as dlq:
            dead = await dlq.until(lambda got: len(got) >= len(BAD_INPUTS))
        async with TopicReader(bootstrap, f"{prefix}events.system") as out:
            envelopes = values(await out.until(lambda got: len(got) >= 1))
        assert [envelope["payload"] for envelope in envelopes] == [good]

        by_value = {record.value: dict(record.headers) for record in dead}
        for reason, topic, value in BAD_INPUTS:
            headers = by_value[value]  # original bytes, untouched
            assert headers["aforo-dlq-reason"].decode() == reason
            assert headers["aforo-dlq-detail"]
            assert headers["aforo-source-topic"].decode() == f"{prefix}{topic}"
        assert all(record.key == b"k1" for record in dead)

        async with aiohttp.ClientSession() as session, session.get(f"{bridge.url}/metrics") as response:
            metrics = await response.text()
        for reason in {reason for reason, _, _ in BAD_INPUTS}:
            count = sum(1 for r, _, _ in BAD_INPUTS if r == reason)
            assert f'aforo_bridge_dead_letter_total{{reason="{reason}"}} {count}.0' in metrics
        assert "aforo_bridge_consumer_lag" in metrics
        assert "aforo_bridge_batch_processing_seconds_bucket" in metrics
        assert "aforo_bridge_records_out_total" in metrics
    finally:
        assert bridge.terminate() == 0
    # Logged once per dead letter.
    assert bridge.log_text().count('"bridge_dead_letter"') == len(BAD_INPUTS)


async def test_sigkill_mid_stream_loses_nothing_and_duplicates_keep_their_event_id(
    local_stack: LocalStack, service_log_dir: Path
) -> None:
    prefix = unique_prefix()
    bootstrap = local_stack.kafka_bootstrap
    topic = f"{prefix}usage.quota.threshold-reached"
    await create_topics(bootstrap, [topic])
    total = 1000
    extra = {"AFORO_BRIDGE_BATCH_MAX_RECORDS": "25"}
    bridge = await start_bridge(local_stack, prefix, service_log_dir, **extra)

    async def stream() -> None:
        for start in range(0, total, 50):
            batch = [
                dumps_json({"tenantId": "t1", "customerId": f"c{seq % 7}", "seq": seq})
                for seq in range(start, start + 50)
            ]
            await produce(bootstrap, topic, batch)
            await asyncio.sleep(0.05)

    producer_task = asyncio.create_task(stream())
    async with TopicReader(bootstrap, f"{prefix}events.system") as reader:
        await reader.until(lambda got: len(got) >= 200, timeout=60)
        bridge.kill()  # SIGKILL: no drain, no commit of the batch in hand
        await producer_task
        restarted = await start_bridge(local_stack, prefix, service_log_dir, **extra)
        try:
            records = await reader.until(
                lambda got: len({json.loads(r.value)["payload"]["seq"] for r in got}) >= total, timeout=90
            )
        finally:
            assert restarted.terminate() == 0
    ids_by_seq: dict[int, set[str]] = {}
    for envelope in values(records):
        ids_by_seq.setdefault(envelope["payload"]["seq"], set()).add(envelope["eventId"])
    assert set(ids_by_seq) == set(range(total))
    assert all(len(ids) == 1 for ids in ids_by_seq.values())
    assert len({next(iter(ids)) for ids in ids_by_seq.values()}) == total
