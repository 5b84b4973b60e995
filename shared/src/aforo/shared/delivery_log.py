"""The delivery-log row: the `delivery_logs` document the dispatcher writes, one per (event, channel,
destination, attempt), and the API's audit trail reads. One owner per stored entity (issue #13).

The row is also the dispatcher's idempotency record: its `_id` (= `deliveryId`) derives from the
unique key, so writing a row twice leaves one, and "has attempt n happened?" is a lookup by `_id`.
It keeps the envelope it delivered as exact JSON text (`envelopeJson`), never as a nested document:
a payload may hold what BSON cannot. Pure: no I/O here. See docs/dispatch.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, NamedTuple, Protocol

from pydantic import ConfigDict, Field, TypeAdapter

from aforo.shared.delivery import ENVELOPE_FIELD, LEGACY_ENVELOPE_FIELD, Channel, DeliveryStatus, SkipReason
from aforo.shared.envelope import EventEnvelope

RESPONSE_BODY_LIMIT_BYTES: Final = 4096
"""How much of a receiver's response body the log keeps: enough to debug, not enough to store a page."""

UNIQUE_KEY_FIELDS: Final = ("tenantId", "eventId", "channel", "endpointId", "attempt")
"""The `delivery_logs` unique index (`aforo.shared.collections.DELIVERY_LOGS`)."""


class AttemptKey(NamedTuple):
    """One attempt of one delivery: the delivery-log row's unique key, and the idempotency key.

    A named tuple: made, hashed and compared several times per delivery attempt (sets and maps of
    attempts in flight and lately finished), which a tuple does in C."""

    tenant_id: str
    event_id: str
    channel: Channel
    destination_id: str | None
    attempt: int


def delivery_id(tenant_id: str, event_id: str, channel: str, destination_id: str | None, attempt: int) -> str:
    """A stable id per row key: the row's `_id` and `deliveryId` (the API addresses a row by it)."""
    return uuid5_text(f"aforo-delivery:{tenant_id}/{event_id}/{channel}/{destination_id}/{attempt}")


_URL_NAMESPACE: Final = uuid.NAMESPACE_URL.bytes


def uuid5_text(name: str) -> str:
    """`str(uuid.uuid5(uuid.NAMESPACE_URL, name))`, computed without building a `UUID` (a third of
    the time; one per delivery attempt). A unit test holds the two equal."""
    digest = bytearray(hashlib.sha1(_URL_NAMESPACE + name.encode(), usedforsecurity=False).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def attempt_row_id(key: AttemptKey) -> str:
    return delivery_id(key.tenant_id, key.event_id, key.channel.value, key.destination_id, key.attempt)


CHANNEL_ONLY_FIELDS: Final = ("destinationId", "maskedAddress", "providerReference", "note")


@dataclass(frozen=True, slots=True)
class ChannelFacts:
    """What an EMAIL/SMS/PAGERDUTY row says beyond a webhook's (docs/channels.md)."""

    destination_id: str
    masked_address: str | None = None
    provider_reference: str | None = None
    note: str | None = None


STORAGE_FIELDS: Final = frozenset({"_id", "deliveryId", ENVELOPE_FIELD, LEGACY_ENVELOPE_FIELD})
"""What a stored row holds beyond the row itself: its ids and the envelope it delivered."""


class RowVerdict(Protocol):
    """What a row needs of an attempt's verdict (the dispatcher's `AttemptVerdict` is one)."""

    @property
    def status(self) -> DeliveryStatus: ...

    @property
    def next_delay_seconds(self) -> float | None:
        """How long until the next attempt, when there is one (a RETRYING row)."""
        ...


def response_body_excerpt(body: bytes | None, limit_bytes: int = RESPONSE_BODY_LIMIT_BYTES) -> str | None:
    """The first `limit_bytes` of a response body as text; bytes that are not UTF-8 become U+FFFD.

    A limit of 0 keeps nothing (None): the operator turned response capture off.
    """
    if limit_bytes < 0:
        raise ValueError(f"limit_bytes: must be >= 0, got {limit_bytes}")
    if body is None or limit_bytes == 0:
        return None
    return body[:limit_bytes].decode("utf-8", errors="replace")


def _as_utc(value: datetime, field: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{field}: must be timezone-aware")
    return value.astimezone(UTC)


def _check_consistent(row: DeliveryLogRow) -> None:
    """The rules that tie a row's status to its other fields (raises ValueError naming the field)."""
    skipped = row.status is DeliveryStatus.SKIPPED
    if skipped != (row.skip_reason is not None):
        raise ValueError("skipReason: set exactly when status is SKIPPED")
    if skipped and row.attempt != 0:
        raise ValueError(f"attempt: a SKIPPED row has attempt 0, got {row.attempt}")
    if not skipped and row.attempt < 1:
        raise ValueError(f"attempt: attempts are numbered from 1, got {row.attempt}")
    if row.status is DeliveryStatus.RETRYING and row.next_attempt_at is None:
        raise ValueError("nextAttemptAt: required on a RETRYING row")
    if row.next_attempt_at is not None and row.status not in (
        DeliveryStatus.RETRYING,
        DeliveryStatus.PENDING,
    ):
        raise ValueError(f"nextAttemptAt: only RETRYING and PENDING rows have one, not {row.status.value}")
    if (
        row.channel is Channel.WEBHOOK
        and row.endpoint_id is None
        and row.status not in (DeliveryStatus.SKIPPED, DeliveryStatus.FAILED)
    ):
        # Without an endpoint a WEBHOOK row is a gate's skip, or a mandatory event that reached
        # no one (FAILED, nothing was attempted).
        raise ValueError("endpointId: required on a WEBHOOK attempt")


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryLogRow:
    """One `delivery_logs` document: one channel/endpoint attempt of one event, or one skip.

    SKIPPED rows have attempt 0 (nothing was sent) and a `skipReason`; their `error` carries the
    gate's detail when there is one (e.g. which payload field a threshold could not read).
    Preference skips have no `endpointId`; endpoint skips and every WEBHOOK attempt name one.
    A RETRYING row (a failed attempt that will be retried) carries `nextAttemptAt`.

    A plain dataclass, not a pydantic model: the dispatcher makes one per delivery attempt from
    values that are typed already (a validated envelope, its own enums), and pydantic's validation
    cost more than the rest of the row's work together. `__post_init__` keeps the row's own rules
    (consistency, timezone-aware UTC times, non-empty ids) on every row however it is made; a stored
    document is read through pydantic (`from_document`), which also checks each field's type.
    """

    __pydantic_config__ = ConfigDict(extra="forbid")

    tenant_id: Annotated[str, Field(alias="tenantId", min_length=1)]
    end_customer_id: Annotated[str, Field(alias="endCustomerId", min_length=1)]
    event_id: Annotated[str, Field(alias="eventId", min_length=1)]
    event_type: Annotated[str, Field(alias="eventType", min_length=1)]
    channel: Channel
    endpoint_id: Annotated[str | None, Field(alias="endpointId")] = None
    attempt: Annotated[int, Field(ge=0)]
    status: DeliveryStatus
    skip_reason: Annotated[SkipReason | None, Field(alias="skipReason")] = None
    error: str | None = None
    response_status: Annotated[int | None, Field(alias="responseStatus")] = None
    response_body: Annotated[str | None, Field(alias="responseBody")] = None
    duration_ms: Annotated[float | None, Field(alias="durationMs", ge=0)] = None
    created_at: Annotated[datetime, Field(alias="createdAt")]
    next_attempt_at: Annotated[datetime | None, Field(alias="nextAttemptAt")] = None
    # EMAIL, SMS and PAGERDUTY rows (docs/channels.md): `endpointId` holds the contact destination's
    # id too, so the unique key and the idempotency record stay one per destination.
    destination_id: Annotated[str | None, Field(alias="destinationId")] = None
    masked_address: Annotated[str | None, Field(alias="maskedAddress")] = None
    provider_reference: Annotated[
        str | None,
        Field(alias="providerReference", description="The SMTP 250 reply, the SMS sid, the dedup_key."),
    ] = None
    note: Annotated[
        str | None, Field(description="`test mode`, an ambiguous SMS timeout, a template fallback.")
    ] = None

    def __post_init__(self) -> None:
        if not (self.tenant_id and self.end_customer_id and self.event_id and self.event_type):
            raise ValueError("tenantId, endCustomerId, eventId, eventType: must not be empty")
        if self.duration_ms is not None and self.duration_ms < 0:
            raise ValueError(f"durationMs: must be >= 0, got {self.duration_ms}")
        # Frozen: the one place a row's field is set after __init__, before anyone sees it.
        if self.created_at.tzinfo is not UTC:
            object.__setattr__(self, "created_at", _as_utc(self.created_at, "createdAt"))
        if self.next_attempt_at is not None and self.next_attempt_at.tzinfo is not UTC:
            object.__setattr__(self, "next_attempt_at", _as_utc(self.next_attempt_at, "nextAttemptAt"))
        _check_consistent(self)

    @classmethod
    def skipped(
        cls,
        envelope: EventEnvelope,
        channel: Channel,
        reason: SkipReason,
        *,
        created_at: datetime,
        endpoint_id: str | None = None,
        detail: str | None = None,
    ) -> DeliveryLogRow:
        """The row for a channel (or one endpoint of it) a gate dropped."""
        return cls._of(
            envelope,
            channel,
            endpoint_id,
            0,
            DeliveryStatus.SKIPPED,
            created_at,
            skip_reason=reason,
            error=detail,
        )

    @classmethod
    def pending(
        cls,
        envelope: EventEnvelope,
        *,
        endpoint_id: str | None,
        attempt: int,
        created_at: datetime,
        channel: Channel = Channel.WEBHOOK,
        next_attempt_at: datetime | None = None,
    ) -> DeliveryLogRow:
        """The row written when an attempt is taken on (its outcome later replaces it, same key)."""
        return cls._of(
            envelope,
            channel,
            endpoint_id,
            attempt,
            DeliveryStatus.PENDING,
            created_at,
            next_attempt_at=next_attempt_at,
        )

    @classmethod
    def attempted(
        cls,
        envelope: EventEnvelope,
        *,
        endpoint_id: str | None,
        attempt: int,
        verdict: RowVerdict,
        created_at: datetime,
        response_status: int | None = None,
        response_body: bytes | None = None,
        error: str | None = None,
        duration_ms: float | None = None,
        channel: Channel = Channel.WEBHOOK,
        body_limit_bytes: int = RESPONSE_BODY_LIMIT_BYTES,
    ) -> DeliveryLogRow:
        """The row of a finished attempt; a retry's `nextAttemptAt` is `created_at` plus its delay."""
        delay = verdict.next_delay_seconds
        next_at = None if delay is None else created_at + timedelta(seconds=delay)
        return cls._of(
            envelope,
            channel,
            endpoint_id,
            attempt,
            verdict.status,
            created_at,
            error=error,
            response_status=response_status,
            response_body=response_body_excerpt(response_body, body_limit_bytes),
            duration_ms=duration_ms,
            next_attempt_at=next_at,
        )

    @classmethod
    def _of(
        cls,
        envelope: EventEnvelope,
        channel: Channel,
        endpoint_id: str | None,
        attempt: int,
        status: DeliveryStatus,
        created_at: datetime,
        **outcome: Any,
    ) -> DeliveryLogRow:
        """The fields every row takes from its event, its key and its status; `outcome` adds the rest."""
        return cls(
            tenant_id=envelope.tenant_id,
            end_customer_id=envelope.customer_id,
            event_id=envelope.event_id,
            event_type=envelope.event_type,
            channel=channel,
            endpoint_id=endpoint_id,
            attempt=attempt,
            status=status,
            created_at=created_at,
            **outcome,
        )

    def with_facts(self, facts: ChannelFacts | None) -> DeliveryLogRow:
        """The row with a channel delivery's destination, masked address, provider reference, note."""
        if facts is None:
            return self
        return dataclasses.replace(
            self,
            destination_id=facts.destination_id,
            masked_address=facts.masked_address,
            provider_reference=facts.provider_reference,
            note=facts.note,
        )

    @property
    def unique_key(self) -> tuple[str, str, str, str | None, int]:
        return (self.tenant_id, self.event_id, self.channel.value, self.endpoint_id, self.attempt)

    @property
    def key(self) -> AttemptKey:
        return AttemptKey(self.tenant_id, self.event_id, self.channel, self.endpoint_id, self.attempt)

    def key_filter(self) -> dict[str, Any]:
        """The unique-key filter, for an upsert that replaces a PENDING row by its outcome."""
        return dict(zip(UNIQUE_KEY_FIELDS, self.unique_key, strict=True))

    def to_document(self) -> dict[str, Any]:
        """The MongoDB document: camelCase, enums as their strings, datetimes as BSON dates, nulls kept
        (a channel-only field only when set: a webhook row's document stays as it was before channels).
        Written field by field: one row per delivery, on the dispatcher's hot path; a unit test holds
        it equal to pydantic's dump of the row by alias."""
        document: dict[str, Any] = {
            "tenantId": self.tenant_id,
            "endCustomerId": self.end_customer_id,
            "eventId": self.event_id,
            "eventType": self.event_type,
            "channel": self.channel.value,
            "endpointId": self.endpoint_id,
            "attempt": self.attempt,
            "status": self.status.value,
            "skipReason": None if self.skip_reason is None else self.skip_reason.value,
            "error": self.error,
            "responseStatus": self.response_status,
            "responseBody": self.response_body,
            "durationMs": self.duration_ms,
            "createdAt": self.created_at,
            "nextAttemptAt": self.next_attempt_at,
        }
        channel_facts = (self.destination_id, self.masked_address, self.provider_reference, self.note)
        for name, value in zip(CHANNEL_ONLY_FIELDS, channel_facts, strict=True):
            if value is not None:
                document[name] = value
        return document

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> DeliveryLogRow:
        """Read a stored row back; the storage-only fields (`_id`, `deliveryId`, the envelope) are not
        part of the row. A document of another shape raises pydantic's ValidationError, which names the
        field (a broken rule of the row's own: in its message)."""
        return _STORED_ROW.validate_python(
            {key: value for key, value in document.items() if key not in STORAGE_FIELDS}
        )


_STORED_ROW: Final = TypeAdapter(DeliveryLogRow)
"""Reads a stored row: each field's type and constraints checked by pydantic, then the row's rules."""


def row_document(row: DeliveryLogRow, body: bytes) -> dict[str, Any]:
    """The stored document of a row: `_id` = `deliveryId` (derived from the key, so writing a row twice
    leaves one), and the exact envelope text it delivered (`envelopeJson`, never a nested document)."""
    document = row.to_document()
    identifier = attempt_row_id(row.key)
    document["_id"] = identifier
    document["deliveryId"] = identifier
    document[ENVELOPE_FIELD] = envelope_text(body)
    return document


def envelope_text(body: bytes) -> str | bytes:
    """How a row stores the envelope it delivered: its exact JSON text (binary if not UTF-8)."""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return body
