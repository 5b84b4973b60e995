"""Thin MongoDB adapters the dispatcher reads configuration from and keeps its state in.

Every query names the tenant (isolation) and uses an index from `aforo.shared.collections`.
Configuration is remembered for `config_cache_seconds` (1 s by default), or while the
config-changes feed vouches for it up to `config_feed_cache_seconds` (`config_feed`), so a change
the API writes reaches the pipeline well inside the 2 s the design asks for.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pymongo import ReturnDocument, UpdateOne
from pymongo.errors import DuplicateKeyError

from aforo.dispatcher.delivery_log import DeliveryLogRow, attempt_row_id, row_document
from aforo.dispatcher.ports import AttemptKey, LatestAttempt
from aforo.dispatcher.preferences import (
    CooldownClaim,
    EventDefinitionView,
    PreferenceView,
    custom_event_definition,
    system_event_definition,
)
from aforo.dispatcher.selection import EndpointView
from aforo.shared.audit_trail import page_documents
from aforo.shared.collections import (
    DELIVERY_LOG_PAGES,
    DELIVERY_LOGS,
    EVENT_DEFINITIONS,
    NOTIFICATION_COOLDOWNS,
    NOTIFICATION_PREFERENCES,
    WEBHOOK_ENDPOINTS,
)
from aforo.shared.delivery import Channel
from aforo.shared.mongo import ExistenceBatcher, MongoStore
from aforo.shared.secret_box import SecretBox
from aforo.shared.serde import dumps_json
from aforo.shared.ttl_cache import TtlCache
from aforo.shared.webhook_endpoints import WebhookEndpointDocument


@dataclass(frozen=True, slots=True)
class EndpointRecord:
    """An endpoint as the dispatcher needs it: the selection view plus its decrypted signing secrets,
    newest first, each with when it retires (None: current)."""

    view: EndpointView
    signing_secrets: tuple[tuple[str, datetime | None], ...]

    def secrets_at(self, now: datetime) -> list[str]:
        """The secrets valid at `now`: a rotated-out one keeps signing until it retires."""
        return [
            secret for secret, retires_at in self.signing_secrets if retires_at is None or retires_at > now
        ]


class ConfigurationReader:
    """Configuration as the dispatcher reads it: MongoDB, remembered for `cache_seconds` (default 1 s).

    The cache keeps an event's three lookups (definition, preference, endpoints) off MongoDB for
    the customer's next events, and bounds staleness below the 2 s within which a change the API
    writes must reach the pipeline. `cache_seconds=0` reads MongoDB for every event.
    """

    def __init__(self, mongo: MongoStore, secret_box: SecretBox, cache_seconds: float = 1.0) -> None:
        self._endpoints = mongo.collection(WEBHOOK_ENDPOINTS.collection)
        self._preferences = mongo.collection(NOTIFICATION_PREFERENCES.collection)
        self._definitions = mongo.collection(EVENT_DEFINITIONS.collection)
        self._secret_box = secret_box
        self._cache = TtlCache(cache_seconds)

    @property
    def cache(self) -> TtlCache:
        """For the configuration feed (`config_feed`), which drops what changes make stale."""
        return self._cache

    async def definition(self, tenant_id: str, event_type: str) -> EventDefinitionView | None:
        """SYSTEM and `webhook.test` from the catalog; CUSTOM from the tenant's definitions."""
        system = system_event_definition(event_type)
        if system is not None:
            return system
        key = ("definition", tenant_id, event_type)
        view: EventDefinitionView | None = await self._cache.get_or_load(
            key, lambda: self._load_definition(tenant_id, event_type)
        )
        return view

    async def _load_definition(self, tenant_id: str, event_type: str) -> EventDefinitionView | None:
        document = await self._definitions.find_one({"tenantId": tenant_id, "eventType": event_type})
        if document is None:
            return None
        channels = frozenset(Channel(channel) for channel in document.get("defaultChannels") or ["WEBHOOK"])
        return custom_event_definition(event_type, channels, threshold_field=document.get("thresholdField"))

    async def preference(self, tenant_id: str, customer_id: str, event_type: str) -> PreferenceView | None:
        key = ("preference", tenant_id, customer_id, event_type)

        async def load() -> PreferenceView | None:
            document = await self._preferences.find_one(
                {"tenantId": tenant_id, "customerId": customer_id, "eventType": event_type}
            )
            return None if document is None else PreferenceView.from_document(document)

        view: PreferenceView | None = await self._cache.get_or_load(key, load)
        return view

    async def endpoints(self, tenant_id: str, customer_id: str) -> list[EndpointView]:
        key = ("endpoints", tenant_id, customer_id)

        async def load() -> list[EndpointView]:
            cursor = self._endpoints.find(
                {"tenantId": tenant_id, "endCustomerId": customer_id}, {"secrets": 0}
            )
            return [EndpointView.from_document(document) async for document in cursor]

        views: list[EndpointView] = await self._cache.get_or_load(key, load)
        return views

    async def endpoint(self, tenant_id: str, endpoint_id: str) -> EndpointRecord | None:
        """The endpoint with its secrets, decrypted once per cache period (not per attempt)."""
        key = ("endpoint", tenant_id, endpoint_id)
        record: EndpointRecord | None = await self._cache.get_or_load(
            key, lambda: self._load_endpoint(tenant_id, endpoint_id)
        )
        return record

    async def _load_endpoint(self, tenant_id: str, endpoint_id: str) -> EndpointRecord | None:
        document = await self._endpoints.find_one({"tenantId": tenant_id, "endpointId": endpoint_id})
        if document is None:
            return None
        stored = WebhookEndpointDocument.from_document(document)
        secrets = tuple(
            (self._secret_box.decrypt(entry.ciphertext), entry.retires_at)
            for entry in stored.secrets
            if entry.ciphertext is not None
        )
        return EndpointRecord(EndpointView.from_stored(stored), secrets)

    async def disable_endpoint(
        self, tenant_id: str, endpoint_id: str, reason: str, now: datetime
    ) -> dict[str, Any] | None:
        """A receiver answered 410 Gone: stop sending to it until its owner re-activates it."""
        document = await self._endpoints.find_one_and_update(
            {"tenantId": tenant_id, "endpointId": endpoint_id, "active": True},
            {"$set": {"active": False, "disabledReason": reason, "updatedAt": now}, "$inc": {"version": 1}},
            projection={"secrets": 0, "_id": 0},
            return_document=ReturnDocument.AFTER,
        )
        if document is not None:
            self._cache.drop(("endpoints", tenant_id, str(document.get("endCustomerId"))))
            self._cache.drop(("endpoint", tenant_id, endpoint_id))
        return document


class CooldownStore:
    def __init__(self, mongo: MongoStore) -> None:
        self._cooldowns = mongo.collection(NOTIFICATION_COOLDOWNS.collection)

    async def claim(self, claim: CooldownClaim) -> bool:
        """Atomically take the cooldown slot; False when another event (or replica) holds it."""
        try:
            await self._cooldowns.find_one_and_update(claim.filter(), claim.update(), upsert=True)
        except DuplicateKeyError:
            return False
        return True


class StateStatus(StrEnum):
    RETRYING = "RETRYING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"


def state_record_id(tenant_id: str, event_id: str, channel: Channel, destination_id: str | None) -> str:
    """The `delivery_state` id of one delivery (every attempt of it)."""
    return dumps_json([tenant_id, event_id, channel.value, destination_id]).decode()


def retrying_state(key: AttemptKey, attempt_base: int, next_attempt_at: datetime, now: datetime) -> UpdateOne:
    """A delivery goes on to another attempt: the state the reconciler watches (upserted)."""
    return UpdateOne(
        {"_id": state_record_id(key.tenant_id, key.event_id, key.channel, key.destination_id)},
        {
            "$set": {
                "status": StateStatus.RETRYING.value,
                "attempt": key.attempt,
                "attemptBase": attempt_base,
                "nextAttemptAt": next_attempt_at,
                "updatedAt": now,
            },
            "$setOnInsert": {
                "tenantId": key.tenant_id,
                "eventId": key.event_id,
                "channel": key.channel.value,
                "endpointId": key.destination_id,
                "createdAt": now,
            },
        },
        upsert=True,
    )


def settled_state(key: AttemptKey, status: StateStatus, now: datetime) -> UpdateOne:
    """A retried (or replayed) delivery reached DELIVERED or FAILED: nothing is owed any more.

    Never moves the state back: it applies only while the record is at this attempt or before."""
    return UpdateOne(
        {
            "_id": state_record_id(key.tenant_id, key.event_id, key.channel, key.destination_id),
            "attempt": {"$lte": key.attempt},
        },
        {"$set": {"status": status.value, "attempt": key.attempt, "nextAttemptAt": None, "updatedAt": now}},
    )


MAX_PROBED_ATTEMPTS = 256
"""More attempts than any delivery makes (at most 10 per budget, a budget per replay)."""
PROBE_BATCH = 32


class DeliveryLedger:
    """Which attempts already happened, from the delivery log itself: one row per attempt, its `_id`
    derived from (tenant, event, channel, destination, attempt), so the row *is* the idempotency record.

    The hot path writes nothing here: an attempt asks `recorded` (batched with every other attempt
    of the same loop turn into one `find` by `_id`), is sent, and its row is written by the log
    writer in bulk. Only replays and the reconciler, which two replicas could run at once, `reserve`
    the attempt first with a PENDING row (a unique `_id`: exactly one insert wins).
    """

    def __init__(self, mongo: MongoStore) -> None:
        self._rows = mongo.collection(DELIVERY_LOGS.collection)
        self._pages = mongo.collection(DELIVERY_LOG_PAGES.collection)
        self._lookups = ExistenceBatcher(self._rows)

    async def recorded(self, key: AttemptKey) -> bool:
        return await self._lookups.exists(attempt_row_id(key))

    async def status(self, key: AttemptKey) -> str | None:
        document = await self._rows.find_one({"_id": attempt_row_id(key)}, {"status": 1})
        return None if document is None else str(document.get("status"))

    async def reserve(
        self, key: AttemptKey, row: DeliveryLogRow, body: bytes, stale_before: datetime
    ) -> bool:
        document = row_document(row, body)
        # Its audit-trail entry first, as the log writer's rows (`aforo.shared.audit_trail`).
        for page in page_documents([document]):
            await self._pages.insert_one(page)
        try:
            await self._rows.insert_one(dict(document))
            return True
        except DuplicateKeyError:
            pass
        # A PENDING row whose owner died long ago may be taken over; any other row means done.
        result = await self._rows.replace_one(
            {"_id": document["_id"], "status": "PENDING", "createdAt": {"$lt": stale_before}}, document
        )
        return result.modified_count == 1

    async def latest(
        self, tenant_id: str, event_id: str, channel: Channel, destination_id: str
    ) -> LatestAttempt | None:
        """The newest attempt of a delivery, found by the `_id`s its attempts would have (rows are
        looked up by key only; see `aforo.shared.collections.DELIVERY_LOGS`)."""
        newest: LatestAttempt | None = None
        for first in range(1, MAX_PROBED_ATTEMPTS + 1, PROBE_BATCH):
            ids = [
                attempt_row_id(AttemptKey(tenant_id, event_id, channel, destination_id, attempt))
                for attempt in range(first, first + PROBE_BATCH)
            ]
            found = [
                document
                async for document in self._rows.find(
                    {"_id": {"$in": ids}}, {"attempt": 1, "status": 1, "createdAt": 1}
                )
            ]
            for document in found:
                attempt = int(document.get("attempt") or 0)
                if newest is None or attempt > newest.attempt:
                    created = document.get("createdAt")
                    if isinstance(created, datetime) and created.tzinfo is None:
                        created = created.replace(tzinfo=UTC)
                    newest = LatestAttempt(attempt, str(document.get("status")), created or datetime.now(UTC))
            if len(found) < PROBE_BATCH:
                break  # attempts are numbered without gaps: none past this batch
        return newest
