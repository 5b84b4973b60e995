"""`POST .../{eventType}/emit`: a manual CUSTOM event on the broker, answered 202."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from aforo.shared.envelope import EventEnvelope
from aforo.shared.serde import dumps_json
from tests.integration.api.calls import (
    define,
    unique,
)
from tests.support.api_harness import ApiUnderTest
from tests.support.kafka import TopicReader


async def test_emit_publishes_the_envelope_then_answers_202_without_a_body(
    api: ApiUnderTest, custom_events: TopicReader
) -> None:
    event_type = unique("WHALE")
    await define(api, event_type, severity="CRITICAL", category="Billing")
    payload = {"amountDue": 2**62, "ratio": 0.1, "nested": {"list": [1, "two", None]}, "name": "Zoë ✓"}

    reply = await api.call(
        "POST",
        f"/api/v1/notification-event-definitions/{event_type}/emit",
        json={"customerId": "c9", "payload": payload},
    )

    assert reply.status == 202
    assert reply.body == b""
    event_id = reply.headers["X-Aforo-Event-Id"]
    await custom_events.until(
        lambda records: any(f'"{event_id}"'.encode() in r.value for r in records), timeout=10
    )
    record = next(r for r in custom_events.records if f'"{event_id}"'.encode() in r.value)
    assert record.key == b"t1:c9"
    envelope = EventEnvelope.from_json_bytes(record.value)
    assert uuid.UUID(envelope.event_id).version == 4
    assert (envelope.event_type, envelope.category, envelope.severity.value) == (
        event_type,
        "Billing",
        "CRITICAL",
    )
    assert (envelope.tenant_id, envelope.customer_id) == ("t1", "c9")
    assert abs(envelope.occurred_at - datetime.now(UTC)) < timedelta(seconds=30)
    assert envelope.payload == payload
    assert dumps_json(payload) in record.value  # verbatim bytes: no re-typing of 2**62 or 0.1


@pytest.mark.parametrize("event_type", ["NO_SUCH_EVENT", "INVOICE_GENERATED", "webhook.test"])
async def test_emit_of_anything_but_a_custom_definition_is_404(api: ApiUnderTest, event_type: str) -> None:
    reply = await api.call(
        "POST",
        f"/api/v1/notification-event-definitions/{event_type}/emit",
        json={"customerId": "c1", "payload": {}},
    )

    assert (reply.status, reply.error["code"]) == (404, "event_definition_not_found")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"payload": {}}, "customerId"),
        ({"customerId": "c1"}, "payload"),
        ({"customerId": "c1", "payload": [1, 2]}, "payload"),
        ({"customerId": "", "payload": {}}, "customerId"),
        ({"customerId": "c1", "tenantId": "t2", "payload": {}}, "tenantId"),
    ],
)
async def test_emit_body_errors_are_422(api: ApiUnderTest, body: dict[str, Any], field: str) -> None:
    event_type = unique()
    await define(api, event_type)

    reply = await api.call("POST", f"/api/v1/notification-event-definitions/{event_type}/emit", json=body)

    assert (reply.status, reply.error["field"]) == (422, field)
