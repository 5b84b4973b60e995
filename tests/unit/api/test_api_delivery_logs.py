"""The delivery-log audit trail: query parsing, the opaque cursor, the window and filters, the row view."""

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from aforo.api.problems import InvalidRequestError, invalid_request_from
from aforo.api.resources.delivery_logs.rules import (
    DeliveryLogQuery,
    decode_cursor,
    encode_cursor,
    log_conditions,
    log_row_view,
    log_window,
)
from aforo.shared.audit_trail import TrailWindow
from aforo.shared.delivery import DeliveryStatus

NOW = datetime(2026, 11, 23, 9, 0, 0, 123000, tzinfo=UTC)


def query(**params: str) -> DeliveryLogQuery:
    return DeliveryLogQuery.model_validate({"endCustomerId": "c1", **params})


@given(
    st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2999, 1, 1), timezones=st.just(UTC)).map(
        lambda moment: moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    ),
    st.one_of(
        st.text("0123456789abcdef", min_size=24, max_size=24).map(lambda text: (text, True)),
        st.text().map(lambda text: (text, False)),
    ),
)
def test_a_cursor_round_trips_its_position(created_at: datetime, row_id: tuple[str, bool]) -> None:
    text, is_object_id = row_id

    position = decode_cursor(encode_cursor(created_at, text, row_id_is_object_id=is_object_id))

    assert (position.created_at, position.row_id, position.row_id_is_object_id) == (
        created_at,
        text,
        is_object_id,
    )


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!",
        "e30",
        "WzEsIm8iLCJ6eiJd",
        "WyJ4IiwicyIsImEiXQ",
        "WzEsInEiLCJhIl0",
        "WzEsIm8iLCJBQkNERUZBQkNERUZBQkNERUZBQkNERUZBQkNEIl0",
        "WzFlMzAsInMiLCJhIl0",
    ],
)
def test_a_cursor_this_api_did_not_hand_out_is_422(cursor: str) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        decode_cursor(cursor)

    assert (refused.value.code, refused.value.field) == ("invalid_cursor", "cursor")


def test_query_parsing() -> None:
    parsed = query(
        status="FAILED", limit="7", **{"from": "2026-11-23T10:00:00+01:00", "to": "2026-11-24T00:00:00Z"}
    )

    assert parsed.status is DeliveryStatus.FAILED
    assert parsed.limit == 7
    assert parsed.from_time == datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    assert parsed.to_time == datetime(2026, 11, 24, tzinfo=UTC)
    assert query(unknownParameter="ignored").limit == 50


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "2026-11-23T10:00:00"}, "from"),
        ({"to": "tomorrow"}, "to"),
        ({"limit": "201"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"status": "failed"}, "status"),
        ({"endCustomerId": ""}, "endCustomerId"),
    ],
)
def test_query_errors_name_the_parameter(params: dict[str, str], field: str) -> None:
    with pytest.raises(ValidationError) as error:
        query(**params)

    assert invalid_request_from(error.value).field == field


def test_the_query_reads_its_window_and_asks_for_the_rows_its_filters_name() -> None:
    parsed = query(
        status="SKIPPED",
        eventId="e1",
        eventType="T",
        **{"from": "2026-11-23T09:00:00.1234Z", "to": "2026-11-24T00:00:00Z"},
    )

    assert log_window(parsed, (NOW, "row-9")) == TrailWindow(
        from_time=datetime(2026, 11, 23, 9, 0, 0, 123400, tzinfo=UTC),
        to_time=datetime(2026, 11, 24, tzinfo=UTC),
        before=(NOW, "row-9"),
    )
    assert log_conditions(parsed) == {"status": "SKIPPED", "eventId": "e1", "eventType": "T"}
    assert log_conditions(query(status="FAILED")) == {"status": "FAILED"}
    assert log_conditions(query()) == {}
    assert log_window(query(), None) == TrailWindow()


def test_a_row_is_shown_without_tenant_id_or_envelope() -> None:
    document: dict[str, Any] = {
        "_id": "x",
        "deliveryId": "d1",
        "tenantId": "t1",
        "endCustomerId": "c1",
        "eventId": "e1",
        "eventType": "INVOICE_GENERATED",
        "channel": "WEBHOOK",
        "endpointId": "ep",
        "attempt": 2,
        "status": "RETRYING",
        "skipReason": None,
        "error": "timeout",
        "responseStatus": None,
        "responseBody": None,
        "durationMs": 5000.0,
        "createdAt": NOW,
        "nextAttemptAt": NOW.astimezone(timezone(timedelta(hours=2))) + timedelta(seconds=4),
        "envelope": {"payload": {"pii": "secret"}},
        "envelopeJson": '{"payload":{"pii":"secret"}}',
    }

    wire = log_row_view(document).to_wire()

    assert "envelope" not in wire
    assert "envelopeJson" not in wire
    assert "tenantId" not in wire
    assert wire["createdAt"] == "2026-11-23T09:00:00.123Z"
    assert wire["nextAttemptAt"] == "2026-11-23T09:00:04.123Z"
    assert (wire["deliveryId"], wire["attempt"], wire["status"]) == ("d1", 2, "RETRYING")
