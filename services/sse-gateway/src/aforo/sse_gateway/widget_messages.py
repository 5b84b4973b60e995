"""Widget envelope (from `<prefix>events.widget`) → the browser message and its SSE frame. Pure.

The browser sees `{type, payload, version: "1", emittedAt, source}`. Its payload is an allowlist of
the producer's fields per event type (docs/sse.md has the table): identifiers and amounts a widget
shows, never personal data. Only scalar values pass (a nested object could hide anything), and a
string that looks like an e-mail address or a JWT is dropped even under an allowed name: a producer
that puts one there by mistake must not leak it into every browser tab of that customer.

Frames are bounded in bytes, not only in number: a payload string longer than
`MAX_PAYLOAD_STRING_LENGTH` or an integer of more than 38 digits is dropped (identifiers, amounts, dates and
codes are far shorter; a truncated identifier would be wrong), and an envelope whose `eventId` or `occurredAt` is longer than
its bound is dropped whole. So no frame exceeds `MAX_FRAME_BYTES`, whatever a producer sends.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from aforo.shared.catalog import WIDGET_EVENTS
from aforo.shared.serde import dumps_json, loads_json

MESSAGE_VERSION: Final = "1"
MESSAGE_SOURCE: Final = "aforo-sse-gateway"

WIDGET_PAYLOAD_FIELDS: Final[Mapping[str, frozenset[str]]] = {
    "aforo.invoice.created": frozenset(
        {
            "invoiceId",
            "invoiceNumber",
            "status",
            "currency",
            "amountDue",
            "subtotal",
            "tax",
            "total",
            "dueDate",
            "issuedAt",
            "periodStart",
            "periodEnd",
        }
    ),
    "aforo.invoice.paid": frozenset(
        {"invoiceId", "invoiceNumber", "status", "currency", "amountPaid", "total", "paidAt", "paymentId"}
    ),
    "aforo.payment.failed": frozenset(
        {
            "paymentId",
            "invoiceId",
            "currency",
            "amount",
            "amountDue",
            "failureCode",
            "attempt",
            "nextRetryAt",
            "dunningLevel",
        }
    ),
    "aforo.subscription.status_changed": frozenset(
        {
            "subscriptionId",
            "planId",
            "status",
            "previousStatus",
            "effectiveAt",
            "trialEndsAt",
            "currentPeriodEnd",
            "cancelAt",
        }
    ),
    "aforo.usage.threshold_breached": frozenset(
        {
            "subscriptionId",
            "meterId",
            "metricId",
            "threshold",
            "thresholdPercent",
            "usage",
            "limit",
            "unit",
            "periodStart",
            "periodEnd",
        }
    ),
}
"""Per widget event type, the payload fields a browser may see. Every catalog widget event has a row."""

MAX_PAYLOAD_STRING_LENGTH: Final = 256
MAX_EVENT_ID_LENGTH: Final = 256
MAX_OCCURRED_AT_LENGTH: Final = 64
_MAX_JSON_BYTES_PER_CHARACTER: Final = 6  # a control character escaped as \u00XX
_MAX_INTEGER: Final = 10**38 - 1  # 38 digits: the widest money column (DECIMAL(38)) still passes
_LONGEST_SCALAR_BYTES: Final = 40  # such an integer with its sign, a float's repr, true/false/null
MAX_FRAME_BYTES: Final = (
    512  # the frame's and the message's fixed parts, with the longest event type
    + MAX_EVENT_ID_LENGTH * 4  # the id line: UTF-8 (line breaks and NUL are refused)
    + MAX_OCCURRED_AT_LENGTH * _MAX_JSON_BYTES_PER_CHARACTER
    + max(
        sum(len(name) + 4 for name in fields)
        + len(fields) * max(MAX_PAYLOAD_STRING_LENGTH * _MAX_JSON_BYTES_PER_CHARACTER, _LONGEST_SCALAR_BYTES)
        for fields in WIDGET_PAYLOAD_FIELDS.values()
    )
)
"""The largest frame `widget_event_from_envelope` can make: what bounds a stream's memory in bytes."""

_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_UNFRAMEABLE = re.compile(r"[\r\n\x00]")


class DropReason(StrEnum):
    """Why a widget-topic record reaches no browser (a metric label)."""

    INVALID_ENVELOPE = "invalid_envelope"
    UNKNOWN_EVENT_TYPE = "unknown_event_type"
    UNFRAMEABLE_EVENT_ID = "unframeable_event_id"
    DUPLICATE = "duplicate"
    TOO_OLD = "too_old"


@dataclass(frozen=True, slots=True)
class WidgetEvent:
    """One event ready to fan out: whose stream it is for, and the exact bytes every client gets."""

    event_id: str
    event_type: str
    tenant_id: str
    customer_id: str
    frame: bytes


@dataclass(frozen=True, slots=True)
class Dropped:
    reason: DropReason
    detail: str


def looks_personal(text: str) -> bool:
    """An e-mail address (`local@domain.tld`) or a JWT anywhere in `text`. Linear in its length: a
    plain regex for e-mail addresses backtracks quadratically on long strings without an `@`."""
    if "@" in text:
        for word in text.split():
            local, at, domain = word.partition("@")
            if at and local and "." in domain[1:]:
                return True
    return "eyJ" in text and _JWT.search(text) is not None


def _safe_value(value: Any) -> bool:
    if isinstance(value, str):
        return len(value) <= MAX_PAYLOAD_STRING_LENGTH and not looks_personal(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return -_MAX_INTEGER <= value <= _MAX_INTEGER  # Python's json keeps integers of any length
    return value is None or isinstance(value, bool | float)


def widget_payload(event_type: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """The allowlisted, scalar, PII-free part of a producer payload, in the producer's field order."""
    allowed = WIDGET_PAYLOAD_FIELDS.get(event_type, frozenset())
    return {name: value for name, value in payload.items() if name in allowed and _safe_value(value)}


def widget_message(event_type: str, payload: Mapping[str, Any], emitted_at: str) -> dict[str, Any]:
    """The message as the browser (and, via postMessage, the host page) sees it."""
    return {
        "type": event_type,
        "payload": widget_payload(event_type, payload),
        "version": MESSAGE_VERSION,
        "emittedAt": emitted_at,
        "source": MESSAGE_SOURCE,
    }


def sse_frame(event_id: str, event_type: str, data: bytes) -> bytes:
    """One SSE event. `data` is compact JSON, which never contains a raw line break."""
    return b"id: " + event_id.encode() + b"\nevent: " + event_type.encode() + b"\ndata: " + data + b"\n\n"


def widget_event_from_envelope(raw: bytes | None) -> WidgetEvent | Dropped:
    """Decide what one widget-topic record becomes. `emittedAt` is the envelope's `occurredAt`, so every
    replica, and every replay, sends the same bytes for the same event."""
    if not raw:
        return Dropped(DropReason.INVALID_ENVELOPE, "empty record")
    try:
        envelope = loads_json(raw)
    except ValueError:
        return Dropped(DropReason.INVALID_ENVELOPE, "not JSON")
    if not isinstance(envelope, dict):
        return Dropped(DropReason.INVALID_ENVELOPE, "not a JSON object")
    fields: dict[str, str] = {}
    for name in ("eventId", "eventType", "tenantId", "customerId", "occurredAt"):
        value = envelope.get(name)
        if not isinstance(value, str) or not value:
            return Dropped(DropReason.INVALID_ENVELOPE, f"{name} missing or not a non-empty string")
        fields[name] = value
    payload = envelope.get("payload")
    if not isinstance(payload, dict):
        return Dropped(DropReason.INVALID_ENVELOPE, "payload is not an object")
    event_id, event_type = fields["eventId"], fields["eventType"]
    if event_type not in WIDGET_EVENTS:
        return Dropped(DropReason.UNKNOWN_EVENT_TYPE, f"{event_type!r} is not a widget event")
    if _UNFRAMEABLE.search(event_id):
        return Dropped(DropReason.UNFRAMEABLE_EVENT_ID, "eventId contains a line break or NUL")
    if len(event_id) > MAX_EVENT_ID_LENGTH:
        return Dropped(DropReason.UNFRAMEABLE_EVENT_ID, f"eventId is longer than {MAX_EVENT_ID_LENGTH}")
    if len(fields["occurredAt"]) > MAX_OCCURRED_AT_LENGTH:
        return Dropped(DropReason.INVALID_ENVELOPE, f"occurredAt is longer than {MAX_OCCURRED_AT_LENGTH}")
    try:
        data = dumps_json(widget_message(event_type, payload, fields["occurredAt"]))
        frame = sse_frame(event_id, event_type, data)
    except UnicodeEncodeError:
        # JSON may escape a lone UTF-16 surrogate ("\ud800"), which no UTF-8 frame can carry.
        return Dropped(DropReason.INVALID_ENVELOPE, "a string holds a lone UTF-16 surrogate")
    return WidgetEvent(event_id, event_type, fields["tenantId"], fields["customerId"], frame)
