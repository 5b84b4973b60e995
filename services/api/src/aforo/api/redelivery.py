"""Which deliveries may be sent again, and the dispatch requests that aim them at one endpoint.

- A **replay** repeats one logged delivery: only a FAILED or SKIPPED webhook delivery to a named
  endpoint (a DELIVERED one arrived; PENDING/RETRYING ones are still in the dispatcher's hands;
  other channels have no endpoint to aim at). It carries the stored envelope, so the eventId stays
  the same and the receiver can deduplicate; the dispatcher makes new attempts.
- A **recovery** replays every FAILED delivery of one endpoint in a time window, once per event,
  leaving out events that were delivered to that endpoint since (by an earlier replay).
- The **`webhook.test` probe** is a fresh envelope (category `Custom`, severity INFO) whose payload
  names its target endpoint, as the dispatcher's selection expects.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Final, Self

from pydantic import Field, ValidationError, model_validator

from aforo.api.problems import ConflictError
from aforo.api.resources.delivery_logs.rules import REPLAYABLE_STATUSES
from aforo.api.wire import QueryParameters, QueryTime, ResponseBody
from aforo.shared.catalog import WEBHOOK_TEST_EVENT
from aforo.shared.channels import NOTIFICATION_TEST_EVENT
from aforo.shared.delivery import ENVELOPE_FIELD, LEGACY_ENVELOPE_FIELD, Channel, DeliveryStatus
from aforo.shared.dispatch_requests import DispatchRequest, DispatchRequestKind
from aforo.shared.envelope import EventCategory, EventEnvelope, Severity

WEBHOOK_TEST_MESSAGE: Final = "This is a test event from aforo-notify."


def probe_request(
    target: Mapping[str, Any],
    *,
    channel: Channel,
    target_id: str,
    payload: dict[str, Any],
    event_id: str,
    now: datetime,
) -> DispatchRequest:
    """A fresh test event aimed at one endpoint or destination, for the target's own customer; the
    dispatcher sends it whatever the target's event filter (`webhook.test` or `notification.test`)."""
    envelope = EventEnvelope(
        event_id=event_id,
        event_type=WEBHOOK_TEST_EVENT if channel is Channel.WEBHOOK else NOTIFICATION_TEST_EVENT,
        category=EventCategory.CUSTOM.value,
        severity=Severity.INFO,
        tenant_id=str(target["tenantId"]),
        customer_id=str(target["endCustomerId"]),
        occurred_at=now,
        payload=payload,
    )
    return DispatchRequest(
        kind=DispatchRequestKind.TEST,
        channel=channel,
        endpoint_id=target_id,
        tenant_id=envelope.tenant_id,
        envelope=envelope,
        requested_at=now,
    )


def webhook_test_request(endpoint: Mapping[str, Any], *, event_id: str, now: datetime) -> DispatchRequest:
    """The probe of one endpoint, for its own customer."""
    endpoint_id = str(endpoint["endpointId"])
    payload = {"endpointId": endpoint_id, "message": WEBHOOK_TEST_MESSAGE}
    return probe_request(
        endpoint, channel=Channel.WEBHOOK, target_id=endpoint_id, payload=payload, event_id=event_id, now=now
    )


def replay_request(row: Mapping[str, Any], *, now: datetime) -> DispatchRequest:
    """The request that repeats a logged delivery; 409 naming why when it cannot be repeated."""
    status = row.get("status")
    if status not in REPLAYABLE_STATUSES:
        raise ConflictError(
            "delivery_not_replayable",
            f"only FAILED or SKIPPED deliveries can be replayed; this one is {status}",
            "status",
        )
    endpoint_id = row.get("endpointId")
    try:
        channel = Channel(str(row.get("channel")))
    except ValueError:
        channel = None
    if channel is None or not endpoint_id:
        # EMAIL/SMS/PAGERDUTY rows name their contact destination in `endpointId` (docs/channels.md).
        raise ConflictError(
            "delivery_not_replayable",
            "only deliveries aimed at a webhook endpoint or a contact destination can be replayed",
            "endpointId",
        )
    try:
        envelope = stored_envelope(row)
    except (ValueError, ValidationError, RecursionError):
        raise ConflictError(
            "delivery_not_replayable", "the delivery has no readable stored envelope", "envelope"
        ) from None
    delivery_id = row.get("deliveryId")
    return DispatchRequest(
        kind=DispatchRequestKind.REPLAY,
        channel=channel,
        endpoint_id=str(endpoint_id),
        tenant_id=envelope.tenant_id,
        envelope=envelope,
        requested_at=now,
        replay_of=str(delivery_id) if delivery_id else None,
    )


def stored_envelope(row: Mapping[str, Any]) -> EventEnvelope:
    """The envelope a row delivered: its exact JSON text (`envelopeJson`), or, in rows written before
    it existed, the `envelope` document. Raises ValueError/ValidationError when it is unreadable."""
    stored = row.get(ENVELOPE_FIELD)
    if isinstance(stored, str):
        return EventEnvelope.from_json_bytes(stored.encode())
    if isinstance(stored, bytes):
        return EventEnvelope.from_json_bytes(stored)
    return EventEnvelope.model_validate(row.get(LEGACY_ENVELOPE_FIELD))


class RecoverQuery(QueryParameters):
    """`POST /api/v1/webhook-endpoints/{endpointId}/recover?since=...[&until=...]`."""

    since: QueryTime = Field(description="Failed deliveries logged at or after this time (ISO-8601).")
    until: QueryTime | None = Field(default=None, description="... and before this time; default: now.")

    @model_validator(mode="after")
    def _window(self) -> Self:
        if self.until is not None and self.until <= self.since:
            raise ValueError("until must be after since")
        return self


def recovery_rows(
    failed_rows: Iterable[Mapping[str, Any]], delivered_event_ids: frozenset[str]
) -> list[Mapping[str, Any]]:
    """One row per failed event, its newest; events delivered to the endpoint since are left out.

    `failed_rows` come oldest first; the result keeps that order, so replays go out in event order.
    """
    newest: dict[str, Mapping[str, Any]] = {}
    for row in failed_rows:
        event_id = str(row.get("eventId"))
        if row.get("status") == DeliveryStatus.FAILED.value and event_id not in delivered_event_ids:
            newest.pop(event_id, None)
            newest[event_id] = row
    return list(newest.values())


class RecoveryAccepted(ResponseBody):
    requested: int = Field(description="Failed deliveries handed to the dispatcher again.")
