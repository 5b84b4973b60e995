"""SYSTEM event + armed definitions → derived CUSTOM envelopes. Pure.

The derived id is `<originalEventId>:<customEventType>`, so a re-delivered source event derives the
same ids and the dispatcher's per-(eventId, endpoint) idempotency holds. Only SYSTEM events arm
rules: a CUSTOM event never triggers another, so no loops.
"""

from __future__ import annotations

from collections.abc import Iterable

from aforo.shared.catalog import SYSTEM_EVENTS
from aforo.shared.envelope import EventEnvelope
from aforo.trigger.definitions import CustomDefinition


def derived_event_id(original_event_id: str, custom_event_type: str) -> str:
    return f"{original_event_id}:{custom_event_type}"


def derive_custom_events(source: EventEnvelope, armed: Iterable[CustomDefinition]) -> list[EventEnvelope]:
    """The CUSTOM envelopes whose rules match the source's payload (which they carry verbatim)."""
    if source.event_type not in SYSTEM_EVENTS:
        return []
    derived: list[EventEnvelope] = []
    for definition in armed:
        if definition.tenant_id != source.tenant_id or not definition.rule.matches(source.payload):
            continue
        derived.append(
            EventEnvelope.model_construct(
                event_id=derived_event_id(source.event_id, definition.event_type),
                event_type=definition.event_type,
                category=definition.category,
                severity=definition.severity,
                tenant_id=source.tenant_id,
                customer_id=source.customer_id,
                occurred_at=source.occurred_at,
                payload=source.payload,
            )
        )
    return derived
