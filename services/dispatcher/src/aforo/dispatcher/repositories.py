"""Thin MongoDB adapters the dispatcher reads configuration from and keeps its state in.

Every query names the tenant (isolation) and uses an index from `aforo.shared.collections`.
Configuration is read per event rather than cached: a change the API writes is visible to the next
event (well inside the 2 s the design asks for), with no cache to invalidate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
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
from aforo.shared.mongo import MongoStore
from aforo.shared.secret_box import SecretBox


@dataclass(frozen=True, slots=True)
class EndpointRecord:
    """An endpoint as the dispatcher needs it: the selection view plus its signing secrets."""

    view: EndpointView
    secrets: tuple[str, ...]


class ConfigurationReader:
    def __init__(self, mongo: MongoStore, secret_box: SecretBox) -> None:
        self._endpoints = mongo.collection(WEBHOOK_ENDPOINTS.collection)
        self._preferences = mongo.collection(NOTIFICATION_PREFERENCES.collection)
        self._definitions = mongo.collection(EVENT_DEFINITIONS.collection)
        self._secret_box = secret_box

    async def definition(self, tenant_id: str, event_type: str) -> EventDefinitionView | None:
        """SYSTEM and `webhook.test` from the catalog; CUSTOM from the tenant's definitions."""
        system = system_event_definition(event_type)
        if system is not None:
            return system
        document = await self._definitions.find_one({"tenantId": tenant_id, "eventType": event_type})
        if document is None:
            return None
        channels = frozenset(Channel(channel) for channel in document.get("defaultChannels") or ["WEBHOOK"])
        return custom_event_definition(event_type, channels, threshold_field=document.get("thresholdField"))

    async def preference(self, tenant_id: str, customer_id: str, event_type: str) -> PreferenceView | None:
        document = await self._preferences.find_one(
            {"tenantId": tenant_id, "customerId": customer_id, "eventType": event_type}
        )
        return None if document is None else PreferenceView.from_document(document)

    async def endpoints(self, tenant_id: str, customer_id: str) -> list[EndpointView]:
        cursor = self._endpoints.find({"tenantId": tenant_id, "endCustomerId": customer_id}, {"secrets": 0})
        return [EndpointView.from_document(document) async for document in cursor]

    async def endpoint(self, tenant_id: str, endpoint_id: str, now: datetime) -> EndpointRecord | None:
        """The endpoint with the secrets valid now (newest first; a rotated one until it retires)."""
        document = await self._endpoints.find_one({"tenantId": tenant_id, "endpointId": endpoint_id})
        if document is None:
            return None
        secrets = tuple(
            self._secret_box.decrypt(entry["ciphertext"])
            for entry in document.get("secrets") or []
            if entry.get("retiresAt") is None or entry["retiresAt"] > now
        )
        return EndpointRecord(EndpointView.from_document(document), secrets)

    async def disable_endpoint(
        self, tenant_id: str, endpoint_id: str, reason: str, now: datetime
    ) -> dict[str, Any] | None:
        """A receiver answered 410 Gone: stop sending to it until its owner re-activates it."""
        return await self._endpoints.find_one_and_update(
            {"tenantId": tenant_id, "endpointId": endpoint_id, "active": True},
            {"$set": {"active": False, "disabledReason": reason, "updatedAt": now}, "$inc": {"version": 1}},
            projection={"secrets": 0, "_id": 0},
            return_document=ReturnDocument.AFTER,
        )


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

    An attempt is sent only by whoever claims it: a compare-and-set on the record's attempt counter.
    A claim is a lease; if its owner dies mid-attempt, the attempt may be taken over once the lease
    expires, so a crash delays an attempt but never loses it. `attempt_base` is where the current
    retry budget started (a replay of a FAILED delivery gets a fresh budget, same eventId).
    """

    def __init__(self, mongo: MongoStore) -> None:
        self._state = mongo.collection(DELIVERY_STATE.collection)

    @staticmethod
    def _key(tenant_id: str, event_id: str, endpoint_id: str) -> dict[str, Any]:
        return {"tenantId": tenant_id, "eventId": event_id, "channel": "WEBHOOK", "endpointId": endpoint_id}

    async def claim(
        self,
        tenant_id: str,
        event_id: str,
        endpoint_id: str,
        attempt: int,
        token: str,
        now: datetime,
        lease_until: datetime,
    ) -> Claim:
        key = self._key(tenant_id, event_id, endpoint_id)
        taken = {
            "status": StateStatus.IN_FLIGHT.value,
            "token": token,
            "leaseUntil": lease_until,
            "updatedAt": now,
        }
        if attempt == 1:
            try:
                await self._state.insert_one(
                    {**key, "attempt": 1, "attemptBase": 0, **taken, "createdAt": now}
                )
                return Claim(ClaimStatus.CLAIMED, 1, 0)
            except DuplicateKeyError:
                pass
        expired = {"status": StateStatus.IN_FLIGHT.value, "leaseUntil": {"$lt": now}}
        document = await self._state.find_one_and_update(
            {
                **key,
                "$or": [
                    {"attempt": attempt - 1, "status": StateStatus.RETRYING.value},
                    {"attempt": attempt - 1, **expired},  # its owner died after scheduling this attempt
                    {"attempt": attempt, **expired},  # this attempt's owner died mid-send: take it over
                ],
            },
            {"$set": {**taken, "attempt": attempt}},
            return_document=ReturnDocument.AFTER,
        )
        if document is not None:
            return Claim(ClaimStatus.CLAIMED, attempt, int(document.get("attemptBase", 0)))
        current = await self._state.find_one(key)
        if (
            current is not None
            and current["status"] == StateStatus.IN_FLIGHT.value
            and current["attempt"] in (attempt - 1, attempt)
        ):
            return Claim(ClaimStatus.BUSY, lease_until=current["leaseUntil"])
        return Claim(ClaimStatus.DONE)

    async def claim_replay(
        self,
        tenant_id: str,
        event_id: str,
        endpoint_id: str,
        token: str,
        now: datetime,
        lease_until: datetime,
    ) -> Claim:
        """A replay of a FAILED (or never-attempted, SKIPPED) delivery: the next attempt, a fresh budget."""
        key = self._key(tenant_id, event_id, endpoint_id)
        taken = {
            "status": StateStatus.IN_FLIGHT.value,
            "token": token,
            "leaseUntil": lease_until,
            "updatedAt": now,
        }
        current = await self._state.find_one(key)
        if current is None:
            try:
                await self._state.insert_one(
                    {**key, "attempt": 1, "attemptBase": 0, **taken, "createdAt": now}
                )
            except DuplicateKeyError:
                return Claim(ClaimStatus.DONE)
            return Claim(ClaimStatus.CLAIMED, 1, 0)
        if current["status"] != StateStatus.FAILED.value:
            return Claim(ClaimStatus.DONE)
        previous = int(current["attempt"])
        document = await self._state.find_one_and_update(
            {**key, "status": StateStatus.FAILED.value, "attempt": previous},
            {"$set": {**taken, "attempt": previous + 1, "attemptBase": previous}},
        )
        if document is None:
            return Claim(ClaimStatus.DONE)
        return Claim(ClaimStatus.CLAIMED, previous + 1, previous)

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
            {**self._key(tenant_id, event_id, endpoint_id), "token": token},
            {"$set": {"status": status.value, "leaseUntil": None, "updatedAt": now, **fields}},
        )
