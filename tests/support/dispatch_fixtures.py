"""Helpers for dispatcher tests: write endpoints and preferences the way the API stores them,
publish envelopes, wait for delivery-log rows, and (`DispatcherTestbed`) one test's own world of
topics, database, receiver and dispatcher processes on the session's stack."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from aiokafka import AIOKafkaProducer

from aforo.shared.channels import (
    ChannelProviderDocument,
    ContactDestinationDocument,
    address_key,
    mask_address,
    new_destination_id,
    normalise_address,
)
from aforo.shared.delivery import Channel
from aforo.shared.envelope import EventEnvelope
from aforo.shared.mongo import MongoStore
from aforo.shared.secret_box import SecretBox, generate_key
from tests.support.envelopes import make_envelope
from tests.support.kafka import unique_prefix
from tests.support.processes import ServiceProcess
from tests.support.receiver import Receiver
from tests.support.stack import LocalStack, service_env


class DispatchWorld:
    """A tenant's configuration in MongoDB plus a producer onto the dispatcher's input topics."""

    def __init__(
        self, mongo: MongoStore, producer: AIOKafkaProducer, secret_box: SecretBox, prefix: str
    ) -> None:
        self.mongo = mongo
        self.producer = producer
        self.secret_box = secret_box
        self.prefix = prefix

    async def endpoint(
        self,
        url: str,
        *,
        tenant: str = "t1",
        customer: str = "c1",
        events: list[str] | None = None,
        active: bool = True,
        secrets: list[str] | None = None,
        retired_secrets: dict[str, datetime] | None = None,
        max_retry_attempts: int = 3,
        initial_backoff_seconds: float = 2.0,
        backoff_multiplier: float = 2.0,
    ) -> str:
        endpoint_id = str(uuid.uuid4())
        now = datetime.now(UTC)
        await self.mongo.collection("webhook_endpoints").insert_one(
            {
                "endpointId": endpoint_id,
                "tenantId": tenant,
                "endCustomerId": customer,
                "url": url,
                "events": events if events is not None else ["*"],
                "active": active,
                "secrets": [
                    {"ciphertext": self.secret_box.encrypt(secret), "createdAt": now, "retiresAt": None}
                    for secret in (secrets or ["whsec_test_secret"])
                ]
                + [
                    {"ciphertext": self.secret_box.encrypt(secret), "createdAt": now, "retiresAt": retires_at}
                    for secret, retires_at in (retired_secrets or {}).items()
                ],
                "maxRetryAttempts": max_retry_attempts,
                "initialBackoffSeconds": initial_backoff_seconds,
                "backoffMultiplier": backoff_multiplier,
                "version": 1,
                "createdAt": now,
                "updatedAt": now,
                "disabledReason": None,
            }
        )
        return endpoint_id

    async def email_provider(
        self, host: str, port: int, *, tenant: str = "t1", security: str = "none", **fields: Any
    ) -> None:
        """An EMAIL provider document as the API stores it (`aforo.shared.channels`)."""
        now = datetime.now(UTC)
        document = ChannelProviderDocument.model_validate(
            {
                "tenantId": tenant,
                "channel": "EMAIL",
                "email": {
                    "host": host,
                    "port": port,
                    "security": security,
                    "fromAddress": "n@notify.example.com",
                },
                "initialBackoffSeconds": 1.0,
                "createdAt": now,
                "updatedAt": now,
                **fields,
            }
        ).to_document()
        await self.mongo.collection("channel_providers").replace_one(
            {"tenantId": tenant, "channel": "EMAIL"}, document, upsert=True
        )

    async def destination(
        self, channel: Channel, address: str, *, tenant: str = "t1", customer: str = "c1"
    ) -> str:
        """A contact destination document as the API stores it."""
        now = datetime.now(UTC)
        normalised = normalise_address(channel, address)
        secret = channel is Channel.PAGERDUTY
        document = ContactDestinationDocument(
            tenant_id=tenant,
            destination_id=new_destination_id(),
            end_customer_id=customer,
            channel=channel,
            address=None if secret else normalised,
            address_ciphertext=self.secret_box.encrypt(normalised) if secret else None,
            address_key=address_key(tenant, customer, channel, normalised),
            masked_address=mask_address(channel, normalised),
            created_at=now,
            updated_at=now,
        )
        await self.mongo.collection("contact_destinations").insert_one(document.to_document())
        return document.destination_id

    async def preference(
        self, event_type: str, *, tenant: str = "t1", customer: str = "c1", **fields: Any
    ) -> None:
        document = {
            "enabled": True,
            "channels": ["WEBHOOK"],
            "threshold": None,
            "cooldownMinutes": None,
            **fields,
        }
        await self.mongo.collection("notification_preferences").replace_one(
            {"tenantId": tenant, "customerId": customer, "eventType": event_type},
            {"tenantId": tenant, "customerId": customer, "eventType": event_type, "version": 1, **document},
            upsert=True,
        )

    @staticmethod
    def envelope(
        event_type: str = "INVOICE_GENERATED",
        *,
        tenant: str = "t1",
        customer: str = "c1",
        payload: dict[str, Any] | None = None,
        event_id: str | None = None,
    ) -> EventEnvelope:
        return make_envelope(
            event_type,
            event_id=event_id,
            tenant=tenant,
            customer=customer,
            occurred_at=datetime.now(UTC),
            payload=payload
            if payload is not None
            else {"tenantId": tenant, "customerId": customer, "amountDue": 100},
        )

    async def publish(self, envelope: EventEnvelope, topic: str = "events.system") -> None:
        await self.producer.send_and_wait(
            f"{self.prefix}{topic}", envelope.to_json_bytes(), key=envelope.partition_key
        )

    async def publish_all(self, envelopes: Iterable[EventEnvelope], topic: str = "events.system") -> None:
        """Send every envelope, then wait for all the acks: a burst, not one round trip each."""
        futures = [
            await self.producer.send(
                f"{self.prefix}{topic}", envelope.to_json_bytes(), key=envelope.partition_key
            )
            for envelope in envelopes
        ]
        await asyncio.gather(*futures)

    async def rows(self, **query: Any) -> list[dict[str, Any]]:
        cursor = (
            self.mongo.collection("delivery_logs")
            .find(query, {"_id": 0})
            .sort([("createdAt", 1), ("attempt", 1)])
        )
        return [row async for row in cursor]

    async def wait_rows(self, count: int, timeout: float = 30.0, **query: Any) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            rows = await self.rows(**query)
            if len(rows) >= count:
                return rows
            if time.monotonic() > deadline:
                raise AssertionError(f"delivery_logs {query}: {len(rows)} rows, expected {count}: {rows}")
            await asyncio.sleep(0.1)


class DispatcherTestbed:
    """One dispatcher integration test's own world on the session's stack: a topic prefix, a database
    and a secrets key of its own, the environment its dispatcher processes run with (`env` adds to
    `service_env`), a `DispatchWorld` to write configuration and publish through, and the receivers
    and dispatcher processes it started, all stopped on the way out:

        async with DispatcherTestbed(local_stack, service_log_dir, AFORO_DISPATCHER_LEASE_SECONDS="3") as bed:
            receiver = await bed.start_receiver()
            dispatcher = bed.start_dispatcher()

    `mongo_uri` points the test and its dispatchers at another database server (a crashing one).
    """

    def __init__(self, stack: LocalStack, log_dir: Path, *, mongo_uri: str | None = None, **env: str) -> None:
        self.log_dir = log_dir
        self.prefix = unique_prefix()
        self.database = f"db_{uuid.uuid4().hex[:8]}"
        key = generate_key()
        self.env = service_env(stack, self.prefix, self.database, AFORO_SECRETS_ENCRYPTION_KEYS=key, **env)
        if mongo_uri is not None:
            self.env["AFORO_MONGO_URI"] = mongo_uri
        self.mongo = MongoStore(mongo_uri or stack.mongo_uri, self.database, app_name="test")
        self.producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all", linger_ms=5)
        self.world = DispatchWorld(self.mongo, self.producer, SecretBox([key]), self.prefix)
        self._dispatchers: list[ServiceProcess] = []
        self._receivers: list[Receiver] = []

    async def __aenter__(self) -> Self:
        await self.mongo.start()
        try:
            await self.producer.start()
        except BaseException:
            await self.mongo.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            for dispatcher in self._dispatchers:
                dispatcher.close()  # killed if still running: a test that cares terminates it itself
            for receiver in self._receivers:
                receiver.stop()
        finally:
            await self.producer.stop()
            await self.mongo.close()

    def start_dispatcher(self) -> ServiceProcess:
        """A new dispatcher process (`python -m aforo.dispatcher`) on this world; not yet ready."""
        dispatcher = ServiceProcess("aforo.dispatcher", "AFORO_DISPATCHER_", self.env, self.log_dir).start()
        self._dispatchers.append(dispatcher)
        return dispatcher

    async def start_receiver(self) -> Receiver:
        """A webhook receiver process (tests.support.webhook_receiver), listening."""
        receiver = Receiver(self.log_dir)
        self._receivers.append(receiver)
        return await receiver.start()
