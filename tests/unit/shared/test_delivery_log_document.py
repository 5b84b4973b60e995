"""A row's document is written field by field (one row per delivery, on the dispatcher's hot path),
not by pydantic's dump: for every kind of row the factories build, it must be the same. Its
id is computed by hashlib, not by building a `uuid.UUID`: for every name, it must be the same."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter

from aforo.shared.delivery import Channel, DeliveryStatus, SkipReason
from aforo.shared.delivery_log import CHANNEL_ONLY_FIELDS, ChannelFacts, DeliveryLogRow, uuid5_text
from tests.support.envelopes import make_envelope

ENVELOPE = make_envelope("INVOICE_GENERATED", event_id="evt-1", payload={"amount": 1})


@dataclass(frozen=True)
class Verdict:
    status: DeliveryStatus
    next_delay_seconds: float | None


def dumped(row: DeliveryLogRow) -> dict[str, Any]:
    """The document as pydantic dumps the row's fields by alias (the reference)."""
    document = TypeAdapter(DeliveryLogRow).dump_python(row, by_alias=True)
    document["channel"] = row.channel.value
    document["status"] = row.status.value
    document["skipReason"] = None if row.skip_reason is None else row.skip_reason.value
    for name in CHANNEL_ONLY_FIELDS:
        if document[name] is None:
            del document[name]
    return document


ZONES = st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-7, minutes=-30))])
MOMENTS = st.builds(
    lambda moment, zone: moment.replace(tzinfo=UTC).astimezone(zone),
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)),
    ZONES,
)
FINISHED = st.sampled_from([DeliveryStatus.DELIVERED, DeliveryStatus.FAILED])
TEXT = st.none() | st.text(max_size=40)


@given(
    channel=st.sampled_from(list(Channel)),
    attempt=st.integers(min_value=1, max_value=20),
    created_at=MOMENTS,
    retry_in=st.none() | st.floats(min_value=0, max_value=86_400),
    finished=FINISHED,
    response_status=st.none() | st.integers(min_value=100, max_value=599),
    response_body=st.none() | st.binary(max_size=64),
    error=TEXT,
    duration_ms=st.none() | st.floats(min_value=0, max_value=60_000),
    facts=st.none() | st.builds(ChannelFacts, st.text(min_size=1, max_size=8), TEXT, TEXT, TEXT),
)
def test_an_attempted_row_has_the_document_pydantic_dumps(
    channel: Channel,
    attempt: int,
    created_at: datetime,
    retry_in: float | None,
    finished: DeliveryStatus,
    response_status: int | None,
    response_body: bytes | None,
    error: str | None,
    duration_ms: float | None,
    facts: ChannelFacts | None,
) -> None:
    verdict = Verdict(DeliveryStatus.RETRYING, retry_in) if retry_in is not None else Verdict(finished, None)
    row = DeliveryLogRow.attempted(
        ENVELOPE,
        endpoint_id="ep-1",
        attempt=attempt,
        verdict=verdict,
        created_at=created_at,
        response_status=response_status,
        response_body=response_body,
        error=error,
        duration_ms=duration_ms,
        channel=channel,
    ).with_facts(facts)
    assert row.created_at.tzinfo is UTC
    assert row.to_document() == dumped(row)


@given(
    channel=st.sampled_from(list(Channel)),
    reason=st.sampled_from(list(SkipReason)),
    created_at=MOMENTS,
    endpoint_id=st.none() | st.just("ep-1"),
    detail=TEXT,
)
def test_a_skipped_row_has_the_document_pydantic_dumps(
    channel: Channel, reason: SkipReason, created_at: datetime, endpoint_id: str | None, detail: str | None
) -> None:
    row = DeliveryLogRow.skipped(
        ENVELOPE, channel, reason, created_at=created_at, endpoint_id=endpoint_id, detail=detail
    )
    assert row.to_document() == dumped(row)


@given(attempt=st.integers(min_value=1, max_value=20), created_at=MOMENTS, next_at=st.none() | MOMENTS)
def test_a_pending_row_has_the_document_pydantic_dumps(
    attempt: int, created_at: datetime, next_at: datetime | None
) -> None:
    row = DeliveryLogRow.pending(
        ENVELOPE, endpoint_id="ep-1", attempt=attempt, created_at=created_at, next_attempt_at=next_at
    )
    assert row.to_document() == dumped(row)


@given(st.text())
def test_a_delivery_id_is_the_standard_uuid5_of_its_key(name: str) -> None:
    try:
        standard: str | None = str(uuid.uuid5(uuid.NAMESPACE_URL, name))
    except UnicodeEncodeError:
        standard = None  # a lone surrogate: neither encodes it

    if standard is None:
        with pytest.raises(UnicodeEncodeError):
            uuid5_text(name)
    else:
        assert uuid5_text(name) == standard
