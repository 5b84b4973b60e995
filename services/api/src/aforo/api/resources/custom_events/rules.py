"""The envelope of a manual emit: a tenant's CUSTOM event, sent on the same topic the trigger uses.

Category and severity come from the definition, the tenant from the token, the customer and the
payload (verbatim) from the body; `eventId` is a fresh uuid4 and `occurredAt` the time of the call.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import Field

from aforo.api.wire import CustomerId, RequestBody
from aforo.shared.envelope import EventEnvelope, Severity


class EmitRequest(RequestBody):
    """`POST /api/v1/notification-event-definitions/{eventType}/emit`."""

    customer_id: CustomerId = Field(alias="customerId")
    payload: dict[str, Any] = Field(description="Any JSON object; forwarded verbatim.")


def custom_envelope(
    definition: Mapping[str, Any], tenant_id: str, body: EmitRequest, *, event_id: str, now: datetime
) -> EventEnvelope:
    return EventEnvelope(
        event_id=event_id,
        event_type=str(definition["eventType"]),
        category=str(definition["category"]),
        severity=Severity(definition["severity"]),
        tenant_id=tenant_id,
        customer_id=body.customer_id,
        occurred_at=now,
        payload=body.payload,
    )
