"""Thin MongoDB adapters the dispatcher reads configuration from and keeps its state in.

Every query names the tenant (isolation) and uses an index from `aforo.shared.collections`.
Configuration is remembered for `config_cache_seconds` (1 s by default), so a change the API writes
reaches the pipeline well inside the 2 s the design asks for.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pymongo import ReturnDocument, UpdateOne
from pymongo.errors import DuplicateKeyError

from aforo.dispatcher.preferences import (
    CooldownClaim,
    EventDefinitionView,
    PreferenceView,
    custom_event_definition,
    system_event_definition,
)
from aforo.dispatcher.selection import EndpointView
from aforo.shared.collections import (
    DELIVERY_STATE,
    EVENT_DEFINITIONS,
    NOTIFICATION_COOLDOWNS,
    NOTIFICATION_PREFERENCES,
    WEBHOOK_ENDPOINTS,
)
from aforo.shared.delivery import Channel
from aforo.shared.mongo import InsertBatcher, MongoStore
from aforo.shared.secret_box import SecretBox
from aforo.shared.serde import dumps_json
from aforo.shared.ttl_cache import TtlCache


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

    async def _cached(self, key: tuple[str, ...], load: Callable[[], Awaitable[Any]]) -> Any:
        return await self._cache.get_or_load(key, load)

    async def definition(self, tenant_id: str, event_type: str) -> EventDefinitionView | None:
        """SYSTEM and `webhook.test` from the catalog; CUSTOM from the tenant's definitions."""
        system = system_event_definition(event_type)
        if system is not None:
            return system
        view: EventDefinitionView | None = await self._cached(
            ("definition", tenant_id, event_type), lambda: self._load_definition(tenant_id, event_type)
        )
        return view

    async def _load_definition(self, tenant_id: str, event_type: str) -> EventDefinitionView | None:
        document = await self._definitions.find_one({"tenantId": tenant_id, "eventType": event_type})
        if document is None:
            return None
        channels = frozenset(Channel(channel) for channel in document.get("defaultChannels") or ["WEBHOOK"])
        return custom_event_definition(event_type, channels, threshold_field=document.get("thresholdField"))

    async def preference(self, tenant_id: str, customer_id: str, event_type: str) -> PreferenceView | None:
        async def load() -> PreferenceView | None:
            document = await self._preferences.find_one(
                {"tenantId": tenant_id, "customerId": customer_id, "eventType": event_type}
            )
            return None if document is None else PreferenceView.from_document(document)

        view: PreferenceView | None = await self._cached(
            ("preference", tenant_id, customer_id, event_type), load
        )
        return view

    async def endpoints(self, tenant_id: str, customer_id: str) -> list[EndpointView]:
        async def load() -> list[EndpointView]:
            cursor = self._endpoints.find(
                {"tenantId": tenant_id, "endCustomerId": customer_id}, {"secrets": 0}
            )
            return [EndpointView.from_document(document) async for document in cursor]

        views: list[EndpointView] = await self._cached(("endpoints", tenant_id, customer_id), load)
        return views

    async def endpoint(self, tenant_id: str, endpoint_id: str) -> EndpointRecord | None:
        """The endpoint with its secrets, decrypted once per cache period (not per attempt)."""
        record: EndpointRecord | None = await self._cached(
            ("endpoint", tenant_id, endpoint_id), lambda: self._load_endpoint(tenant_id, endpoint_id)
        )
        return record

    async def _load_endpoint(self, tenant_id: str, endpoint_id: str) -> EndpointRecord | None:
        document = await self._endpoints.find_one({"tenantId": tenant_id, "endpointId": endpoint_id})
        if document is None:
            return None
        secrets = tuple(
            (self._secret_box.decrypt(entry["ciphertext"]), entry.get("retiresAt"))
            for entry in document.get("secrets") or []
        )
        return EndpointRecord(EndpointView.from_document(document), secrets)

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


class ClaimStatus(StrEnum):
    CLAIMED = "claimed"
    DONE = "done"  # delivered, failed, or another owner carries the chain on: nothing to do
    BUSY = "busy"  # another owner holds a live lease on this attempt: look again when it expires


class StateStatus(StrEnum):
    IN_FLIGHT = "IN_FLIGHT"
    RETRYING = "RETRYING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"


@dataclass(frozen=True, slots=True)
class Claim:
    status: ClaimStatus
    attempt: int = 0
    attempt_base: int = 0
    lease_until: datetime | None = None


class DeliveryStateStore:
    """The idempotency record per (event, channel, endpoint) and the atomic claim of each attempt.

    An attempt is sent only by whoever claims it, and a claim is a compare-and-set: read the record,
    decide (`claim_decision`, pure), then write with a filter on the record's `_id` and its current
    `token`, which every claim replaces, so of two contenders exactly one write matches. A claim is a
    lease: if its owner dies mid-attempt, the attempt may be taken over once the lease has expired,
    so a crash delays an attempt but never loses it. `attemptBase` is where the current retry budget
    started (a replay of a FAILED delivery gets a fresh budget, same eventId).

    Every write filters on `_id` (plus the token): a point lookup on any MongoDB-compatible server,
    never a scan, however many deliveries the collection holds. Most claims are a first attempt that
    meets no record; their inserts are batched across concurrent attempts (`InsertBatcher`), and a
    duplicate key sends that one claim down the read-and-compare path.
    """

    def __init__(self, mongo: MongoStore) -> None:
        self._state = mongo.collection(DELIVERY_STATE.collection)
        self._inserts = InsertBatcher(self._state)

    @staticmethod
    def record_id(tenant_id: str, event_id: str, endpoint_id: str) -> str:
        return dumps_json([tenant_id, event_id, "WEBHOOK", endpoint_id]).decode()

    async def claim(
        self,
        tenant_id: str,
        event_id: str,
        endpoint_id: str,
        attempt: int,
        token: str,
        now: datetime,
        lease_until: datetime,
        *,
        replay: bool = False,
    ) -> Claim:
        """Claim `attempt` (or, for a replay, the next attempt of a FAILED delivery)."""
        record_id = self.record_id(tenant_id, event_id, endpoint_id)
        first_sight = attempt == 1 and not replay  # most attempts 1 meet no record: insert straight away
        for _ in range(5):  # each loop is one lost race; contention on one delivery is rare
            current = None if first_sight else await self._state.find_one({"_id": record_id})
            first_sight = False
            decision = claim_decision(current, attempt, now, replay=replay)
            if decision.status is not ClaimStatus.CLAIMED:
                return decision
            fields = {
                "status": StateStatus.IN_FLIGHT.value,
                "attempt": decision.attempt,
                "attemptBase": decision.attempt_base,
                "token": token,
                "leaseUntil": lease_until,
                "updatedAt": now,
            }
            if current is None:
                inserted = await self._inserts.insert(
                    {
                        "_id": record_id,
                        "tenantId": tenant_id,
                        "eventId": event_id,
                        "channel": "WEBHOOK",
                        "endpointId": endpoint_id,
                        "createdAt": now,
                        **fields,
                    }
                )
                if inserted:
                    return decision
                continue
            result = await self._state.update_one(
                {"_id": record_id, "token": current.get("token")}, {"$set": fields}
            )
            if result.modified_count == 1:
                return decision
        return Claim(ClaimStatus.BUSY, lease_until=lease_until)

    def settle(
        self,
        tenant_id: str,
        event_id: str,
        endpoint_id: str,
        token: str,
        status: StateStatus,
        now: datetime,
        **fields: Any,
    ) -> UpdateOne:
        """The update recording an attempt's outcome; it applies only while this owner holds the claim.

        Returned, not run: the log writer applies it in the flush that writes the attempt's row.
        """
        return UpdateOne(
            {"_id": self.record_id(tenant_id, event_id, endpoint_id), "token": token},
            {"$set": {"status": status.value, "leaseUntil": None, "updatedAt": now, **fields}},
        )


def claim_decision(
    current: Mapping[str, Any] | None, attempt: int, now: datetime, *, replay: bool = False
) -> Claim:
    """Whether `attempt` may be claimed given the delivery's record. Pure.

    CLAIMED carries the attempt number and budget base to write; BUSY the live lease to wait out;
    DONE means nothing is left to do here (delivered, failed, or another owner carries the chain).
    """
    if replay:
        if current is None:
            return Claim(ClaimStatus.CLAIMED, 1, 0)
        if current["status"] == StateStatus.FAILED.value:
            previous = int(current["attempt"])
            return Claim(ClaimStatus.CLAIMED, previous + 1, previous)
        return Claim(ClaimStatus.DONE)
    if current is None:
        return Claim(ClaimStatus.CLAIMED, attempt, 0)
    status, recorded = current["status"], int(current["attempt"])
    base = int(current.get("attemptBase", 0))
    if status == StateStatus.RETRYING.value and recorded == attempt - 1:
        return Claim(ClaimStatus.CLAIMED, attempt, base)
    if status == StateStatus.IN_FLIGHT.value and recorded in (attempt - 1, attempt):
        lease_until = current.get("leaseUntil")
        if lease_until is not None and lease_until.tzinfo is None:
            lease_until = lease_until.replace(tzinfo=UTC)
        if lease_until is None or lease_until < now:
            # Its owner died after scheduling this attempt, or mid-send of it: take it over.
            return Claim(ClaimStatus.CLAIMED, attempt, base)
        return Claim(ClaimStatus.BUSY, lease_until=lease_until)
    return Claim(ClaimStatus.DONE)
