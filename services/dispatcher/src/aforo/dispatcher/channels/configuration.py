"""Channel configuration as the dispatcher reads it: providers, contact destinations and template
overrides from MongoDB, remembered for `cache_seconds` like the rest of its configuration.

Secrets are decrypted here, once per cache period: the provider's password or auth token and a
PagerDuty routing key. They live only in these records and the `ChannelDelivery` built from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aforo.shared.catalog import SYSTEM_EVENTS
from aforo.shared.channels import ChannelProviderDocument, ContactDestinationDocument
from aforo.shared.collections import (
    CHANNEL_PROVIDERS,
    CHANNEL_TEMPLATES,
    CONTACT_DESTINATIONS,
    DELIVERY_LOGS,
    EVENT_DEFINITIONS,
)
from aforo.shared.delivery import Channel
from aforo.shared.delivery_log import AttemptKey, attempt_row_id
from aforo.shared.mongo import MongoStore
from aforo.shared.secret_box import SecretBox
from aforo.shared.templates import TemplateParts
from aforo.shared.ttl_cache import TtlCache


@dataclass(frozen=True, slots=True)
class ProviderRecord:
    document: ChannelProviderDocument
    secret: str | None
    """The decrypted SMTP password or SMS auth token (None when the provider has none)."""


@dataclass(frozen=True, slots=True)
class DestinationRecord:
    document: ContactDestinationDocument
    address: str
    """The address as sent: the stored e-mail address or phone number, or the decrypted routing key."""

    @property
    def destination_id(self) -> str:
        return self.document.destination_id


class ChannelConfigurationReader:
    def __init__(self, mongo: MongoStore, secret_box: SecretBox, cache_seconds: float = 1.0) -> None:
        self._providers = mongo.collection(CHANNEL_PROVIDERS.collection)
        self._destinations = mongo.collection(CONTACT_DESTINATIONS.collection)
        self._templates = mongo.collection(CHANNEL_TEMPLATES.collection)
        self._logs = mongo.collection(DELIVERY_LOGS.collection)
        self._definitions = mongo.collection(EVENT_DEFINITIONS.collection)
        self._secret_box = secret_box
        self._cache = TtlCache(cache_seconds)

    @property
    def cache(self) -> TtlCache:
        """For the configuration feed (`config_feed`), which drops what changes make stale."""
        return self._cache

    async def provider(self, tenant_id: str, channel: Channel) -> ProviderRecord | None:
        async def load() -> ProviderRecord | None:
            document = await self._providers.find_one({"tenantId": tenant_id, "channel": channel.value})
            if document is None:
                return None
            provider = ChannelProviderDocument.model_validate(document)
            config = provider.config
            ciphertext = getattr(config, "password_ciphertext", None) or getattr(
                config, "auth_token_ciphertext", None
            )
            return ProviderRecord(provider, None if not ciphertext else self._secret_box.decrypt(ciphertext))

        record: ProviderRecord | None = await self._cache.get_or_load(
            ("provider", tenant_id, channel.value), load
        )
        return record

    async def destinations(self, tenant_id: str, customer_id: str) -> list[DestinationRecord]:
        """Every destination of one customer, all channels (one query per customer per cache period)."""

        async def load() -> list[DestinationRecord]:
            cursor = self._destinations.find({"tenantId": tenant_id, "endCustomerId": customer_id}).sort(
                [("createdAt", 1), ("destinationId", 1)]
            )
            return [self._record(document) async for document in cursor]

        records: list[DestinationRecord] = await self._cache.get_or_load(
            ("destinations", tenant_id, customer_id), load
        )
        return records

    async def destination(self, tenant_id: str, destination_id: str) -> DestinationRecord | None:
        async def load() -> DestinationRecord | None:
            document = await self._destinations.find_one(
                {"tenantId": tenant_id, "destinationId": destination_id}
            )
            return None if document is None else self._record(document)

        record: DestinationRecord | None = await self._cache.get_or_load(
            ("destination", tenant_id, destination_id), load
        )
        return record

    async def template(self, tenant_id: str, event_type: str, channel: Channel) -> TemplateParts | None:
        async def load() -> TemplateParts | None:
            document = await self._templates.find_one(
                {"tenantId": tenant_id, "eventType": event_type, "channel": channel.value}
            )
            if document is None:
                return None
            return TemplateParts(
                subject=document.get("subject"), text=document.get("text"), html=document.get("html")
            )

        parts: TemplateParts | None = await self._cache.get_or_load(
            ("template", tenant_id, event_type, channel.value), load
        )
        return parts

    async def display_name(self, tenant_id: str, event_type: str) -> str | None:
        """A CUSTOM definition's `displayName`, which heads its generic template (None for SYSTEM
        events, whose built-ins have their own headline)."""
        if event_type in SYSTEM_EVENTS:
            return None

        async def load() -> str | None:
            document = await self._definitions.find_one(
                {"tenantId": tenant_id, "eventType": event_type}, {"_id": 0, "displayName": 1}
            )
            name = None if document is None else document.get("displayName")
            return str(name) if name else None

        name: str | None = await self._cache.get_or_load(("display_name", tenant_id, event_type), load)
        return name

    async def ambiguous_attempts(
        self, tenant_id: str, event_id: str, channel: Channel, destination_id: str, *, before_attempt: int
    ) -> int:
        """How many earlier attempts of this delivery ended in an ambiguous timeout (their rows say so):
        SMS retries such an attempt once at most, and the count survives a restart or a takeover.
        The earlier rows are found by their `_id`s (rows are looked up by key only)."""
        ids = [
            attempt_row_id(AttemptKey(tenant_id, event_id, channel, destination_id, attempt))
            for attempt in range(max(1, before_attempt - 32), before_attempt)
        ]
        if not ids:
            return 0
        return await self._logs.count_documents(
            {"_id": {"$in": ids}, "note": {"$regex": "ambiguous timeout"}}
        )

    def _record(self, document: dict[str, Any]) -> DestinationRecord:
        destination = ContactDestinationDocument.model_validate(document)
        if destination.address_ciphertext is not None:
            address = self._secret_box.decrypt(destination.address_ciphertext)
        else:
            assert destination.address is not None  # checked by the document model
            address = destination.address
        return DestinationRecord(destination, address)
