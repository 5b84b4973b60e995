"""The one envelope factory of the tests: a valid `EventEnvelope` with every field defaulted, so a
test names only what it is about. (Test modules keep thin wrappers with their own defaults.)"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from aforo.shared.envelope import EventEnvelope, Severity

FIXED_TIME = datetime(2026, 1, 1, tzinfo=UTC)


def make_envelope(
    event_type: str = "INVOICE_GENERATED",
    *,
    event_id: str | None = None,
    tenant: str = "t1",
    customer: str = "c1",
    payload: dict[str, Any] | None = None,
    category: str = "Billing",
    severity: Severity | str = Severity.INFO,
    occurred_at: datetime | None = None,
) -> EventEnvelope:
    """An envelope; a random eventId unless given, `FIXED_TIME` unless given, an empty payload unless given."""
    return EventEnvelope(
        event_id=event_id or str(uuid.uuid4()),
        event_type=event_type,
        category=category,
        severity=Severity(severity),
        tenant_id=tenant,
        customer_id=customer,
        occurred_at=occurred_at or FIXED_TIME,
        payload=payload if payload is not None else {},
    )
