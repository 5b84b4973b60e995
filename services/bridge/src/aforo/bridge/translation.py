"""Producer record → canonical envelope(s), or a dead-letter verdict. Pure: no broker needed.

The producer's JSON object becomes the envelope's `payload` verbatim. Its `eventId`, when present,
is kept; otherwise one is derived from (topic, partition, offset), so a re-delivered Kafka record
gets the same id and downstream deduplication holds.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from aforo.bridge.routes import TopicRoute
from aforo.shared.envelope import canonical_utc_text, encode_envelope, format_utc, is_clean_identifier
from aforo.shared.serde import MAX_PAYLOAD_DEPTH, dumps_json, loads_json

EVENT_ID_NAMESPACE = uuid.UUID("6f0c3a52-5b8e-4e55-9a39-0d8e7c1f6a21")
MAX_ID_LENGTH = 128
MAX_EVENT_ID_LENGTH = 512


class DeadLetterReason(StrEnum):
    """Why a producer record could not become an envelope (a metric label and a DLQ header)."""

    EMPTY_RECORD = "empty_record"
    OVERSIZED = "oversized"
    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_TENANT_ID = "missing_tenant_id"
    MISSING_CUSTOMER_ID = "missing_customer_id"
    INVALID_EVENT_ID = "invalid_event_id"
    INVALID_OCCURRED_AT = "invalid_occurred_at"
    UNMAPPED_TOPIC = "unmapped_topic"


class SourceRecord(Protocol):
    """What translation reads of a producer record (aiokafka's `ConsumerRecord` is one, as it comes)."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...

    @property
    def timestamp(self) -> int:
        """Milliseconds since the epoch."""
        ...

    @property
    def value(self) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class DeadLetter:
    reason: DeadLetterReason
    detail: str


@dataclass(frozen=True, slots=True)
class OutboundEnvelope:
    """One envelope ready to publish: its Kafka key (`tenantId:customerId`) and exact value bytes."""

    event_type: str
    event_id: str
    key: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class Translation:
    """What to publish: the SYSTEM envelope and/or the widget envelope (same eventId)."""

    system: OutboundEnvelope | None
    widget: OutboundEnvelope | None


_NAMESPACE_BYTES = EVENT_ID_NAMESPACE.bytes


def derived_event_id(topic: str, partition: int, offset: int) -> str:
    """A stable id for a record that carries none: the same Kafka position gives the same id.

    `str(uuid.uuid5(EVENT_ID_NAMESPACE, "<topic>/<partition>/<offset>"))`, computed without the UUID
    object (half of the bridge's records take this path; a unit test holds the two equal)."""
    name = _NAMESPACE_BYTES + f"{topic}/{partition}/{offset}".encode()
    digest = bytearray(hashlib.sha1(name, usedforsecurity=False).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # the RFC 4122 variant
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _identifier(payload: dict[str, Any], field: str) -> str | None:
    value = payload.get(field)
    if (
        isinstance(value, str)
        and value.strip()
        and len(value) <= MAX_ID_LENGTH
        and is_clean_identifier(value)
    ):
        return value
    return None


def translate(
    record: SourceRecord, route: TopicRoute | None, max_record_bytes: int
) -> Translation | DeadLetter:
    """Decide what one producer record becomes."""
    if route is None:
        return DeadLetter(DeadLetterReason.UNMAPPED_TOPIC, f"no route for topic {record.topic!r}")
    raw = record.value
    if raw is None or not raw:
        return DeadLetter(DeadLetterReason.EMPTY_RECORD, "record has no value")
    if len(raw) > max_record_bytes:
        return DeadLetter(
            DeadLetterReason.OVERSIZED, f"{len(raw)} bytes exceeds the {max_record_bytes}-byte limit"
        )
    try:
        payload = loads_json(raw, max_depth=MAX_PAYLOAD_DEPTH)
    except ValueError as error:
        return DeadLetter(DeadLetterReason.INVALID_JSON, f"not JSON: {error}"[:500])
    if not isinstance(payload, dict):
        return DeadLetter(
            DeadLetterReason.NOT_AN_OBJECT, f"expected a JSON object, got {type(payload).__name__}"
        )
    tenant_id = _identifier(payload, "tenantId")
    if tenant_id is None:
        return DeadLetter(
            DeadLetterReason.MISSING_TENANT_ID,
            f"tenantId must be a non-empty string of at most {MAX_ID_LENGTH} printable characters",
        )
    customer_id = _identifier(payload, "customerId")
    if customer_id is None:
        return DeadLetter(
            DeadLetterReason.MISSING_CUSTOMER_ID,
            f"customerId must be a non-empty string of at most {MAX_ID_LENGTH} printable characters",
        )
    event_id = payload.get("eventId")
    if event_id is None:
        event_id = derived_event_id(record.topic, record.partition, record.offset)
    elif (
        not isinstance(event_id, str)
        or not event_id.strip()
        or len(event_id) > MAX_EVENT_ID_LENGTH
        or not is_clean_identifier(event_id)
    ):
        return DeadLetter(
            DeadLetterReason.INVALID_EVENT_ID, "eventId must be a non-empty string of printable characters"
        )
    occurred_raw = payload.get("occurredAt")
    try:
        occurred_text = (
            format_utc(datetime.fromtimestamp(record.timestamp / 1000, tz=UTC))
            if occurred_raw is None
            else canonical_utc_text(occurred_raw)
        )
    except (ValueError, TypeError, OverflowError, OSError) as error:
        return DeadLetter(DeadLetterReason.INVALID_OCCURRED_AT, f"occurredAt: {error}"[:500])

    # The producer's bytes are the payload, verbatim (only surrounding whitespace trimmed): the
    # envelope is spliced around them rather than re-encoded, which is exact and cheap.
    payload_json = raw.strip(b" \t\r\n")
    if not payload_json.startswith(b"{"):
        payload_json = dumps_json(payload)  # e.g. a BOM or UTF-16 input that json accepted
    key = f"{tenant_id}:{customer_id}".encode()

    def outbound(event_type: str, category: str, severity: str) -> OutboundEnvelope:
        value = encode_envelope(
            event_id, event_type, category, severity, tenant_id, customer_id, occurred_text, payload_json
        )
        return OutboundEnvelope(event_type, event_id, key, value)

    system = route.system_event
    widget = route.widget_event
    return Translation(
        system=outbound(system.event_type, system.category.value, system.severity.value) if system else None,
        widget=outbound(widget.event_type, widget.category.value, widget.severity.value) if widget else None,
    )
