"""Every MongoDB collection of the suite and the indexes its queries need, declared once.

The API writes configuration; the trigger and dispatcher read it; the dispatcher writes the delivery
log the API serves. Every query of every service starts with `tenantId` (tenant isolation), so every
index does too.
"""

from __future__ import annotations

from pymongo import ASCENDING, DESCENDING, IndexModel

from aforo.shared.mongo import CollectionIndexes

EVENT_DEFINITIONS = CollectionIndexes(
    "event_definitions",
    (IndexModel([("tenantId", ASCENDING), ("eventType", ASCENDING)], unique=True, name="tenant_event_type"),),
)

WEBHOOK_ENDPOINTS = CollectionIndexes(
    "webhook_endpoints",
    (
        # The API's 409: one customer cannot register the same URL twice.
        IndexModel(
            [("tenantId", ASCENDING), ("endCustomerId", ASCENDING), ("url", ASCENDING)],
            unique=True,
            name="tenant_customer_url",
        ),
        IndexModel([("tenantId", ASCENDING), ("endpointId", ASCENDING)], unique=True, name="tenant_endpoint"),
    ),
)

NOTIFICATION_PREFERENCES = CollectionIndexes(
    "notification_preferences",
    (
        IndexModel(
            [("tenantId", ASCENDING), ("customerId", ASCENDING), ("eventType", ASCENDING)],
            unique=True,
            name="tenant_customer_event_type",
        ),
    ),
)

DELIVERY_LOGS = CollectionIndexes(
    "delivery_logs",
    (
        # One row per (event, channel, endpoint, attempt): a replayed Kafka record cannot add a second.
        IndexModel(
            [
                ("tenantId", ASCENDING),
                ("eventId", ASCENDING),
                ("channel", ASCENDING),
                ("endpointId", ASCENDING),
                ("attempt", ASCENDING),
            ],
            unique=True,
            name="tenant_event_channel_endpoint_attempt",
        ),
        # The by-customer audit trail, newest first, cursor-paginated.
        IndexModel(
            [
                ("tenantId", ASCENDING),
                ("endCustomerId", ASCENDING),
                ("createdAt", DESCENDING),
                ("_id", DESCENDING),
            ],
            name="tenant_customer_newest",
        ),
        # The API's replay of one delivery (`POST /api/v1/deliveries/{deliveryId}/replay`).
        IndexModel([("tenantId", ASCENDING), ("deliveryId", ASCENDING)], name="tenant_delivery"),
        # The API's recovery of an endpoint's failed deliveries since a time.
        IndexModel(
            [
                ("tenantId", ASCENDING),
                ("endpointId", ASCENDING),
                ("status", ASCENDING),
                ("createdAt", ASCENDING),
            ],
            name="tenant_endpoint_status_created",
        ),
    ),
)

CONFIG_VERSIONS = CollectionIndexes(
    "config_versions",
    (
        # The API's per-document version counter. It outlives a deleted document, so an event type
        # deleted and defined again gets a higher version than its delete, which caches must not drop.
        IndexModel(
            [("tenantId", ASCENDING), ("kind", ASCENDING), ("documentId", ASCENDING)],
            unique=True,
            name="tenant_kind_document",
        ),
    ),
)

DELIVERY_STATE = CollectionIndexes(
    "delivery_state",
    (
        # The idempotency record: one per (event, channel, endpoint); its attempt counter is claimed
        # atomically, so a re-delivered or duplicated Kafka record cannot send an attempt twice.
        IndexModel(
            [
                ("tenantId", ASCENDING),
                ("eventId", ASCENDING),
                ("channel", ASCENDING),
                ("endpointId", ASCENDING),
            ],
            unique=True,
            name="tenant_event_channel_endpoint",
        ),
    ),
)

NOTIFICATION_COOLDOWNS = CollectionIndexes(
    "notification_cooldowns",
    (
        # Without this unique index two dispatcher replicas could both claim one cooldown slot.
        IndexModel(
            [("tenantId", ASCENDING), ("customerId", ASCENDING), ("eventType", ASCENDING)],
            unique=True,
            name="tenant_customer_event_type",
        ),
    ),
)

ALL_COLLECTIONS = (
    EVENT_DEFINITIONS,
    WEBHOOK_ENDPOINTS,
    NOTIFICATION_PREFERENCES,
    DELIVERY_LOGS,
    DELIVERY_STATE,
    NOTIFICATION_COOLDOWNS,
    CONFIG_VERSIONS,
)
