"""The trigger agent on the real broker and SecantusDB: WHALE_CUSTOMER is derived for a big invoice
only, follows a rule update and a delete within the documented 2 s staleness bound."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from aforo.shared.config_changes import ConfigChange, ConfigKind, ConfigOperation
from aforo.shared.envelope import EventEnvelope
from aforo.shared.mongo import MongoStore
from tests.support.kafka import TopicReader, unique_prefix
from tests.support.processes import ServiceProcess
from tests.support.stack import LocalStack

STALENESS_BOUND_SECONDS = 2.0

WHALE_RULE: dict[str, Any] = {
    "sourceEvents": ["INVOICE_GENERATED"],
    "match": {
        "all": [
            {"field": "amountDue", "op": "gte", "value": 10000},
            {"not": {"field": "currency", "op": "in", "value": ["JPY", "KRW"]}},
        ]
    },
}


class DefinitionWriter:
    """Writes a CUSTOM definition the way the API does: MongoDB first, then the config topic."""

    def __init__(self, stack: LocalStack, prefix: str, database: str) -> None:
        self.store = MongoStore(stack.mongo_uri, database, app_name="test")
        self.producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
        self.topic = f"{prefix}config.changes"
        self.version = 0

    async def __aenter__(self) -> DefinitionWriter:
        await self.store.start()
        await self.producer.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.producer.stop()
        await self.store.close()

    async def put(self, rule: dict[str, Any] | None) -> None:
        self.version += 1
        collection = self.store.collection("event_definitions")
        document = {
            "tenantId": "t1",
            "eventType": "WHALE_CUSTOMER",
            "category": "Custom",
            "severity": "WARNING",
            "triggerRule": rule,
            "version": self.version,
        }
        if rule is None:
            await collection.delete_one({"tenantId": "t1", "eventType": "WHALE_CUSTOMER"})
        else:
            await collection.replace_one(
                {"tenantId": "t1", "eventType": "WHALE_CUSTOMER"}, document, upsert=True
            )
        change = ConfigChange(
            kind=ConfigKind.EVENT_DEFINITION,
            tenant_id="t1",
            document_id="WHALE_CUSTOMER",
            operation=ConfigOperation.DELETE if rule is None else ConfigOperation.UPSERT,
            version=self.version,
            document=None if rule is None else document,
            changed_at=datetime.now(UTC),
        )
        await self.producer.send_and_wait(self.topic, change.to_json_bytes(), key=change.key)


def invoice(amount: int) -> EventEnvelope:
    return EventEnvelope(
        event_id=str(uuid.uuid4()),
        event_type="INVOICE_GENERATED",
        category="Billing",
        severity="INFO",
        tenant_id="t1",
        customer_id="c1",
        occurred_at=datetime.now(UTC),
        payload={"tenantId": "t1", "customerId": "c1", "amountDue": amount, "currency": "USD"},
    )


async def publish(stack: LocalStack, topic: str, envelopes: list[EventEnvelope]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for envelope in envelopes:
            await producer.send_and_wait(topic, envelope.to_json_bytes(), key=envelope.partition_key)
    finally:
        await producer.stop()


async def test_whale_customer_follows_create_update_and_delete(
    local_stack: LocalStack, service_log_dir: Path
) -> None:
    prefix = unique_prefix()
    database = f"db_{uuid.uuid4().hex[:8]}"
    env = {
        "AFORO_KAFKA_BOOTSTRAP_SERVERS": local_stack.kafka_bootstrap,
        "AFORO_MONGO_URI": local_stack.mongo_uri,
        "AFORO_MONGO_DATABASE": database,
        "AFORO_TOPIC_PREFIX": prefix,
        "AFORO_SHUTDOWN_GRACE_SECONDS": "10",
    }
    trigger = ServiceProcess("aforo.trigger", "AFORO_TRIGGER_", env, service_log_dir).start()
    system_topic, custom_topic = f"{prefix}events.system", f"{prefix}events.custom"
    try:
        async with DefinitionWriter(local_stack, prefix, database) as writer:
            await writer.put(WHALE_RULE)  # in MongoDB before the agent starts: the cold-start path
            await trigger.wait_ready(timeout=90)
            async with TopicReader(local_stack.kafka_bootstrap, custom_topic) as custom:
                big, small = invoice(12000), invoice(500)
                await publish(local_stack, system_topic, [big, small])
                derived = await custom.until(lambda got: len(got) >= 1)
                await custom.settle(1.5)
                assert len(custom.records) == 1
                whale = json.loads(derived[0].value)
                assert whale["eventId"] == f"{big.event_id}:WHALE_CUSTOMER"
                assert whale["eventType"] == "WHALE_CUSTOMER"
                assert whale["severity"] == "WARNING"
                assert whale["payload"] == big.payload

                # Update through the change feed: visible within the staleness bound.
                lowered = {**WHALE_RULE, "match": {"field": "amountDue", "op": "gte", "value": 100}}
                await writer.put(lowered)
                await asyncio.sleep(STALENESS_BOUND_SECONDS)
                big2, small2 = invoice(12000), invoice(500)
                await publish(local_stack, system_topic, [big2, small2])
                await custom.until(lambda got: len(got) >= 3)
                ids = {json.loads(record.value)["eventId"] for record in custom.records[1:]}
                assert ids == {f"{big2.event_id}:WHALE_CUSTOMER", f"{small2.event_id}:WHALE_CUSTOMER"}

                # Delete: nothing more is derived.
                await writer.put(None)
                await asyncio.sleep(STALENESS_BOUND_SECONDS)
                await publish(local_stack, system_topic, [invoice(12000), invoice(500)])
                await custom.settle(2.0)
                assert len(custom.records) == 3
    finally:
        assert trigger.terminate() == 0
