"""Paths, bodies and calls the API integration tests share (the fixtures are in conftest.py)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from aforo.shared.config_changes import ConfigChange
from aforo.shared.delivery_log import delivery_id
from tests.support.api_harness import ApiUnderTest
from tests.support.kafka import TopicReader

DEFINITIONS = "/api/v1/admin/event-definitions"
ENDPOINTS = "/api/v1/webhook-endpoints"
PREFERENCES = "/api/v1/notification-preferences"
DELIVERY_LOGS = "/internal/v1/delivery-logs/by-customer"
WHALE_RULE: dict[str, Any] = {
    "sourceEvents": ["INVOICE_GENERATED"],
    "match": {"all": [{"field": "amountDue", "op": "gte", "value": 10000}]},
}


def unique(prefix: str = "EVT") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8].upper()}"


def definition_body(event_type: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "eventType": event_type,
        "displayName": "Whale customer",
        "category": "Custom",
        "severity": "WARNING",
        "defaultChannels": ["WEBHOOK", "EMAIL"],
        "triggerRule": WHALE_RULE,
    }
    body.update(overrides)
    return body


async def define(api: ApiUnderTest, event_type: str, tenant: str = "t1", **overrides: Any) -> dict[str, Any]:
    reply = await api.call("POST", DEFINITIONS, tenant=tenant, json=definition_body(event_type, **overrides))
    assert reply.status == 201, reply.body
    created: dict[str, Any] = reply.json()
    return created


def endpoint_body(customer: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "endCustomerId": customer,
        "url": f"https://hooks.example.com/{uuid.uuid4().hex}",
        "events": ["INVOICE_GENERATED", "*"],
        "secret": f"whsec_{uuid.uuid4().hex}",
    }
    body.update(overrides)
    return body


async def register(api: ApiUnderTest, customer: str, tenant: str = "t1", **overrides: Any) -> dict[str, Any]:
    reply = await api.call("POST", ENDPOINTS, tenant=tenant, json=endpoint_body(customer, **overrides))
    assert reply.status == 201, reply.body
    created: dict[str, Any] = reply.json()
    return created


async def changes_of(reader: TopicReader, tenant: str, document_id: str, count: int) -> list[ConfigChange]:
    """The config changes of one document, once `count` of them have landed."""

    def mine(records: list[Any]) -> list[ConfigChange]:
        parsed = [ConfigChange.from_json_bytes(record.value) for record in records]
        return [
            change for change in parsed if change.tenant_id == tenant and change.document_id == document_id
        ]

    await reader.until(lambda records: len(mine(records)) >= count, timeout=10)
    return mine(reader.records)


def log_row(
    tenant: str,
    customer: str,
    created_at: datetime,
    *,
    status: str = "DELIVERED",
    endpoint_id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A row as the dispatcher writes it (`DeliveryLogRow.to_document()` + its `_id`, which is its
    deliveryId, derived from its key + envelopeJson); store it with `store_rows`."""
    event_id = extra.pop("event_id", str(uuid.uuid4()))
    event_type = extra.pop("event_type", "INVOICE_GENERATED")
    envelope = {
        "eventId": event_id,
        "eventType": event_type,
        "category": "Billing",
        "severity": "INFO",
        "tenantId": tenant,
        "customerId": customer,
        "occurredAt": "2026-01-01T00:00:00.000Z",
        "payload": {"amountDue": 12000},
    }
    row: dict[str, Any] = {
        "deliveryId": str(uuid.uuid4()),
        "tenantId": tenant,
        "endCustomerId": customer,
        "eventId": event_id,
        "eventType": event_type,
        "channel": "WEBHOOK",
        "endpointId": endpoint_id,
        "attempt": 0 if status == "SKIPPED" else 1,
        "status": status,
        "skipReason": "endpoint_filter" if status == "SKIPPED" else None,
        "error": "HTTP 500" if status == "FAILED" else None,
        "responseStatus": 500 if status == "FAILED" else 200,
        "responseBody": "oops",
        "durationMs": 12.5,
        "createdAt": created_at,
        "nextAttemptAt": None,
        "envelopeJson": json.dumps(envelope, separators=(",", ":")),
    }
    row.update(extra)
    row.setdefault(
        "_id",
        delivery_id(tenant, event_id, row["channel"], row["endpointId"], row["attempt"])
        if "deliveryId" not in extra
        else row["deliveryId"],
    )
    row["deliveryId"] = row["_id"]
    return row
