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
    ),
)

ALL_COLLECTIONS = (EVENT_DEFINITIONS, WEBHOOK_ENDPOINTS, NOTIFICATION_PREFERENCES, DELIVERY_LOGS)
