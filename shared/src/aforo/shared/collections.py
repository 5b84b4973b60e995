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
    # A row's `_id` is its key, (tenant, event, channel, endpoint, attempt) hashed to a uuid5
    # (`aforo.shared.delivery_log.delivery_id`): unique by construction, and every lookup by key
    # (the dispatcher's idempotency check, replays, the reconciler, the API's replay) is by `_id`.
    # No secondary index: one costs the database about twice what the row costs on every insert, on
    # the delivery's hot path. The one read that is not by key, the by-customer audit trail (and the
    # API's recovery, which reads it), goes through `DELIVERY_LOG_PAGES` instead.
    (),
    # `tenant_customer_newest` is retired too, but by the dispatcher once it has paged the rows it
    # indexed (`aforo.dispatcher.audit_backfill`), not at start.
    retired=("tenant_endpoint_failed_created",),
)

DELIVERY_LOG_PAGES = CollectionIndexes(
    "delivery_log_pages",
    (
        # The audit trail's index (`aforo.shared.audit_trail`): a customer's pages, newest first.
        IndexModel(
            [("tenantId", ASCENDING), ("endCustomerId", ASCENDING), ("newest", DESCENDING)],
            name="tenant_customer_newest",
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
        # The state of a delivery that is owed another attempt (written only once a first attempt
        # fails retryably): one per (event, channel, endpoint), what the reconciler reads.
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
        # The reconciler's question: RETRYING deliveries long overdue (dispatcher `reconciliation`).
        IndexModel([("status", ASCENDING), ("nextAttemptAt", ASCENDING)], name="status_next_attempt"),
    ),
)

PARTITION_MARKS = CollectionIndexes(
    "partition_marks",
    # Per (consumer group, topic, partition): the highest offset the dispatcher may have worked on
    # (`aforo.dispatcher.partition_marks`). Read and written by `_id` only: no secondary index.
    (),
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

# Embed keys, auth-bridge signing keys and embed sessions (docs/sse.md): the API writes the keys,
# the SSE gateway reads them and writes the sessions. The gateway resolves a browser's public key id
# and a bridge token's `kid` together with the token's tenant, so these indexes start with tenantId
# too; the exceptions are the two cross-tenant sweeps a gateway replica runs for all the streams it
# holds, named below.
EMBED_KEYS = CollectionIndexes(
    "embed_keys",
    (
        IndexModel([("tenantId", ASCENDING), ("keyId", ASCENDING)], unique=True, name="tenant_key"),
        IndexModel([("tenantId", ASCENDING), ("createdAt", ASCENDING)], name="tenant_created"),
        # CORS preflights carry no credentials: "does any active key allow this origin?" (cross-tenant).
        IndexModel([("allowedDomains", ASCENDING), ("status", ASCENDING)], name="allowed_domain_status"),
        # The gateway's revocation sweep: keys revoked since its last look (cross-tenant).
        IndexModel([("revokedAt", ASCENDING)], name="revoked_at"),
    ),
)

BRIDGE_SIGNING_KEYS = CollectionIndexes(
    "bridge_signing_keys",
    (
        IndexModel([("tenantId", ASCENDING), ("kid", ASCENDING)], unique=True, name="tenant_kid"),
        IndexModel([("tenantId", ASCENDING), ("status", ASCENDING)], name="tenant_status"),
    ),
)

EMBED_SESSIONS = CollectionIndexes(
    "embed_sessions",
    (
        IndexModel([("tenantId", ASCENDING), ("sessionId", ASCENDING)], unique=True, name="tenant_session"),
        # The API's "revoke every session of this customer".
        IndexModel([("tenantId", ASCENDING), ("customerId", ASCENDING)], name="tenant_customer"),
        # The API's "revoking a signing key ends the sessions it minted".
        IndexModel([("tenantId", ASCENDING), ("signingKeyId", ASCENDING)], name="tenant_signing_key"),
        # The gateway's revocation sweep: sessions revoked since its last look (cross-tenant).
        IndexModel([("revokedAt", ASCENDING)], name="revoked_at"),
        # Ended sessions are removed by MongoDB's TTL monitor once `purgeAt` passes.
        IndexModel([("purgeAt", ASCENDING)], expireAfterSeconds=0, name="purge_at_ttl"),
    ),
)

# Bridge tokens already exchanged, so none is exchanged twice: one record per `jti`, kept until the
# token could no longer verify anyway (`expiresAt`, then MongoDB's TTL monitor removes it).
BRIDGE_TOKEN_USES = CollectionIndexes(
    "bridge_token_uses",
    (
        IndexModel([("tenantId", ASCENDING), ("jti", ASCENDING)], unique=True, name="tenant_jti"),
        IndexModel([("expiresAt", ASCENDING)], expireAfterSeconds=0, name="expires_at_ttl"),
    ),
)

# Channels (docs/channels.md): the API writes providers, destinations and template overrides; the
# dispatcher reads them per delivery, always by tenant first.
CHANNEL_PROVIDERS = CollectionIndexes(
    "channel_providers",
    (IndexModel([("tenantId", ASCENDING), ("channel", ASCENDING)], unique=True, name="tenant_channel"),),
)

CONTACT_DESTINATIONS = CollectionIndexes(
    "contact_destinations",
    (
        # The API's 409: one customer cannot register the same address twice on one channel.
        IndexModel(
            [
                ("tenantId", ASCENDING),
                ("endCustomerId", ASCENDING),
                ("channel", ASCENDING),
                ("addressKey", ASCENDING),
            ],
            unique=True,
            name="tenant_customer_channel_address",
        ),
        IndexModel(
            [("tenantId", ASCENDING), ("destinationId", ASCENDING)], unique=True, name="tenant_destination"
        ),
    ),
)

CHANNEL_TEMPLATES = CollectionIndexes(
    "channel_templates",
    (
        IndexModel(
            [("tenantId", ASCENDING), ("eventType", ASCENDING), ("channel", ASCENDING)],
            unique=True,
            name="tenant_event_type_channel",
        ),
    ),
)

ALL_COLLECTIONS = (
    EVENT_DEFINITIONS,
    WEBHOOK_ENDPOINTS,
    NOTIFICATION_PREFERENCES,
    DELIVERY_LOGS,
    DELIVERY_LOG_PAGES,
    DELIVERY_STATE,
    PARTITION_MARKS,
    NOTIFICATION_COOLDOWNS,
    CONFIG_VERSIONS,
    EMBED_KEYS,
    BRIDGE_SIGNING_KEYS,
    EMBED_SESSIONS,
    BRIDGE_TOKEN_USES,
    CHANNEL_PROVIDERS,
    CONTACT_DESTINATIONS,
    CHANNEL_TEMPLATES,
)
