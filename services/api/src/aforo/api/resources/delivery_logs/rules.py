"""How a customer's delivery audit trail is filtered, ordered and paged.

Newest first by `(createdAt, _id)`, read through the trail's pages (`aforo.shared.audit_trail`). A page's `nextCursor` is an
opaque token for the last row's `(createdAt, _id)`; the next page holds the rows strictly after it in
that order, so rows written meanwhile (newer) never shift a page and no row is listed twice. Rows
are shown without `_id` and without the stored envelope (`envelopeJson`): the list stays small, and a
replay reads the envelope server-side.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from pydantic import ConfigDict, Field, ValidationError

from aforo.api.problems import InvalidRequestError
from aforo.api.wire import CustomerId, Identifier, QueryParameters, QueryTime, ResponseBody, Timestamp
from aforo.shared.audit_trail import TrailWindow
from aforo.shared.delivery import ENVELOPE_FIELD, LEGACY_ENVELOPE_FIELD, DeliveryStatus
from aforo.shared.delivery_log import DeliveryLogRow
from aforo.shared.logging import get_logger

DEFAULT_PAGE_SIZE: Final = 50
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
MAX_PAGE_SIZE: Final = 200


log = get_logger(__name__)

_HIDDEN_FIELDS: Final = frozenset({"_id", ENVELOPE_FIELD, LEGACY_ENVELOPE_FIELD, "tenantId"})

REPLAYABLE_STATUSES: Final = frozenset({DeliveryStatus.FAILED, DeliveryStatus.SKIPPED})


class DeliveryLogQuery(QueryParameters):
    """`GET /internal/v1/delivery-logs/by-customer`."""

    end_customer_id: CustomerId = Field(alias="endCustomerId")
    status: DeliveryStatus | None = None
    event_id: Identifier | None = Field(default=None, alias="eventId", max_length=512)
    event_type: Identifier | None = Field(default=None, alias="eventType", max_length=128)
    from_time: QueryTime | None = Field(default=None, alias="from", description="Inclusive.")
    to_time: QueryTime | None = Field(default=None, alias="to", description="Exclusive.")
    limit: int = Field(default=DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)
    cursor: str | None = Field(
        default=None, min_length=1, max_length=512, description="`nextCursor` of the previous page."
    )


@dataclass(frozen=True)
class PagePosition:
    """Where the previous page ended: its last row's `createdAt` and `_id` (as stored)."""

    created_at: datetime
    row_id: str
    row_id_is_object_id: bool


def encode_cursor(created_at: datetime, row_id: str, *, row_id_is_object_id: bool) -> str:
    """An opaque cursor. BSON dates hold milliseconds, so the millisecond count is exact."""
    moment = created_at if created_at.tzinfo is not None else created_at.replace(tzinfo=UTC)
    milliseconds = (moment - EPOCH) // timedelta(milliseconds=1)  # exact: no float on the way
    raw = json.dumps([milliseconds, "o" if row_id_is_object_id else "s", row_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> PagePosition:
    """The position a cursor names; 422 on `cursor` for anything this API did not hand out."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        milliseconds, kind, row_id = json.loads(raw)
        if (
            not isinstance(milliseconds, int)
            or isinstance(milliseconds, bool)
            or kind not in ("o", "s")
            or not isinstance(row_id, str)
        ):
            raise ValueError("unexpected cursor content")
        created_at = EPOCH + timedelta(milliseconds=milliseconds)
    except (ValueError, TypeError, binascii.Error, OverflowError, OSError):
        raise InvalidRequestError(
            "invalid_cursor", "the cursor is not one this API handed out", "cursor"
        ) from None
    if kind == "o" and (len(row_id) != 24 or any(c not in "0123456789abcdef" for c in row_id)):
        raise InvalidRequestError("invalid_cursor", "the cursor is not one this API handed out", "cursor")
    return PagePosition(created_at, row_id, kind == "o")


def log_window(query: DeliveryLogQuery, after: tuple[datetime, object] | None) -> TrailWindow:
    """The part of the trail a page reads: `[from, to)`, and after the previous page's last row
    `(createdAt, _id)` (with `_id` already in its stored type)."""
    return TrailWindow(from_time=query.from_time, to_time=query.to_time, before=after)


def log_conditions(query: DeliveryLogQuery) -> dict[str, str]:
    """The query's filters as conditions on a row (status, eventId, eventType), for the database."""
    conditions: dict[str, str] = {}
    if query.status is not None:
        conditions["status"] = query.status.value
    if query.event_id is not None:
        conditions["eventId"] = query.event_id
    if query.event_type is not None:
        conditions["eventType"] = query.event_type
    return conditions


class DeliveryLogView(ResponseBody):
    """One row of the dispatcher's delivery log (`delivery_logs`), as the audit trail shows it."""

    model_config = ConfigDict(extra="ignore")

    delivery_id: str | None = Field(default=None, alias="deliveryId")
    end_customer_id: str = Field(alias="endCustomerId")
    event_id: str = Field(alias="eventId")
    event_type: str = Field(alias="eventType")
    channel: str
    endpoint_id: str | None = Field(default=None, alias="endpointId")
    attempt: int
    status: str
    skip_reason: str | None = Field(default=None, alias="skipReason")
    error: str | None = None
    response_status: int | None = Field(default=None, alias="responseStatus")
    response_body: str | None = Field(default=None, alias="responseBody")
    duration_ms: float | None = Field(default=None, alias="durationMs")
    created_at: Timestamp = Field(alias="createdAt")
    next_attempt_at: Timestamp | None = Field(default=None, alias="nextAttemptAt")
    destination_id: str | None = Field(
        default=None, alias="destinationId", description="EMAIL/SMS/PAGERDUTY: the contact destination."
    )
    masked_address: str | None = Field(
        default=None, alias="maskedAddress", description="`j***@acme.com`, `+4479*****123`, `****abcd`."
    )
    provider_reference: str | None = Field(
        default=None,
        alias="providerReference",
        description="The SMTP 250 reply, the SMS message sid or the PagerDuty dedup_key.",
    )
    note: str | None = Field(
        default=None, description="`test mode`, an ambiguous SMS timeout, a template fallback."
    )


class DeliveryLogPage(ResponseBody):
    items: list[DeliveryLogView]
    next_cursor: str | None = Field(alias="nextCursor", description="Pass as `cursor` for the next page.")


def log_row_view(document: Mapping[str, Any]) -> DeliveryLogView:
    """The audit trail's view of a stored row, read through the row's one model
    (`aforo.shared.delivery_log.DeliveryLogRow`, which the dispatcher writes): the tenant and the
    envelope stay server-side."""
    try:
        wire = DeliveryLogRow.from_document(document).to_document()
        wire["deliveryId"] = document.get("deliveryId")
    except ValidationError as error:
        # A row the model refuses (written by an older version, or fixed by hand) is still shown as
        # stored: the audit trail never fails on one odd row. Logged, so it gets looked at.
        log.warning(
            "delivery_log_row_unreadable", delivery_id=document.get("deliveryId"), error=str(error)[:300]
        )
        wire = dict(document)
    return DeliveryLogView.model_validate(
        {key: value for key, value in wire.items() if key not in _HIDDEN_FIELDS}
    )
