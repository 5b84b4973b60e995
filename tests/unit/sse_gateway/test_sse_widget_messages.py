"""Widget envelope → browser message and SSE frame: the PII allowlist, the wire shape, bad records."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aforo.shared.catalog import WIDGET_EVENTS
from aforo.shared.serde import dumps_json
from aforo.sse_gateway.widget_messages import (
    MAX_EVENT_ID_LENGTH,
    MAX_FRAME_BYTES,
    MAX_OCCURRED_AT_LENGTH,
    MAX_PAYLOAD_STRING_LENGTH,
    WIDGET_PAYLOAD_FIELDS,
    Dropped,
    DropReason,
    WidgetEvent,
    looks_personal,
    sse_frame,
    widget_event_from_envelope,
    widget_payload,
)

OCCURRED_AT = "2026-11-23T09:00:00.250Z"
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
JWT_LIKE = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjMSJ9.c2lnbmF0dXJl"


def envelope(event_type: str = "aforo.invoice.created", **payload: Any) -> dict[str, Any]:
    return {
        "eventId": "evt-1",
        "eventType": event_type,
        "category": "Billing",
        "severity": "INFO",
        "tenantId": "t1",
        "customerId": "c1",
        "occurredAt": OCCURRED_AT,
        "payload": {"tenantId": "t1", "customerId": "c1", **payload},
    }


def parse_frame(frame: bytes) -> dict[str, str]:
    assert frame.endswith(b"\n\n")
    fields = {}
    for line in frame.decode().rstrip("\n").split("\n"):
        name, _, value = line.partition(": ")
        fields[name] = value
    return fields


def test_every_widget_event_of_the_catalog_has_an_allowlist() -> None:
    assert set(WIDGET_PAYLOAD_FIELDS) == set(WIDGET_EVENTS)


@pytest.mark.parametrize(
    ("event_type", "payload", "visible"),
    [
        (
            "aforo.invoice.created",
            {
                "invoiceId": "inv-1",
                "amountDue": 12000,
                "currency": "EUR",
                "dueDate": "2026-12-01",
                "customerEmail": "ana@example.com",
                "billingAddress": {"line1": "1 Main St"},
                "customerName": "Ana",
            },
            {"invoiceId": "inv-1", "amountDue": 12000, "currency": "EUR", "dueDate": "2026-12-01"},
        ),
        (
            "aforo.invoice.paid",
            {"invoiceId": "inv-1", "amountPaid": 99.5, "paidAt": "2026-11-23T09:00:00Z", "email": "a@b.co"},
            {"invoiceId": "inv-1", "amountPaid": 99.5, "paidAt": "2026-11-23T09:00:00Z"},
        ),
        (
            "aforo.payment.failed",
            {
                "paymentId": "pay-1",
                "amount": 10,
                "failureCode": "card_declined",
                "failureMessage": "call Ana",
            },
            {"paymentId": "pay-1", "amount": 10, "failureCode": "card_declined"},
        ),
        (
            "aforo.subscription.status_changed",
            {"subscriptionId": "sub-1", "status": "ACTIVE", "previousStatus": "TRIAL", "phone": "+34 600"},
            {"subscriptionId": "sub-1", "status": "ACTIVE", "previousStatus": "TRIAL"},
        ),
        (
            "aforo.usage.threshold_breached",
            {"meterId": "m-1", "usage": 950, "limit": 1000, "thresholdPercent": 95, "userName": "ana"},
            {"meterId": "m-1", "usage": 950, "limit": 1000, "thresholdPercent": 95},
        ),
        # Defence in depth: an allowed name carrying an e-mail address or a JWT is dropped anyway.
        ("aforo.invoice.created", {"invoiceNumber": "ana@example.com", "invoiceId": JWT_LIKE}, {}),
        # Only scalars pass: a nested value could hide anything.
        ("aforo.invoice.created", {"total": {"amount": 1}, "tax": [1], "status": None}, {"status": None}),
        # Big integers and floats stay as the producer sent them.
        ("aforo.invoice.created", {"amountDue": 2**70, "tax": 0.1}, {"amountDue": 2**70, "tax": 0.1}),
    ],
)
def test_the_payload_is_the_allowlisted_scalar_fields_only(
    event_type: str, payload: dict[str, Any], visible: dict[str, Any]
) -> None:
    outcome = widget_event_from_envelope(dumps_json(envelope(event_type, **payload)))

    assert isinstance(outcome, WidgetEvent)
    data = json.loads(parse_frame(outcome.frame)["data"])
    assert data["payload"] == visible
    assert "tenantId" not in data["payload"]
    assert "customerId" not in data["payload"]


def test_the_frame_carries_id_event_and_the_exact_message_shape() -> None:
    outcome = widget_event_from_envelope(dumps_json(envelope(invoiceId="inv-1")))

    assert isinstance(outcome, WidgetEvent)
    assert (outcome.event_id, outcome.event_type, outcome.tenant_id, outcome.customer_id) == (
        "evt-1",
        "aforo.invoice.created",
        "t1",
        "c1",
    )
    frame = parse_frame(outcome.frame)
    assert list(frame) == ["id", "event", "data"]
    assert frame["id"] == "evt-1"
    assert frame["event"] == "aforo.invoice.created"
    assert json.loads(frame["data"]) == {
        "type": "aforo.invoice.created",
        "payload": {"invoiceId": "inv-1"},
        "version": "1",
        "emittedAt": OCCURRED_AT,
        "source": "aforo-sse-gateway",
    }
    assert list(json.loads(frame["data"])) == ["type", "payload", "version", "emittedAt", "source"]


def test_the_same_envelope_always_gives_the_same_bytes() -> None:
    raw = dumps_json(envelope(invoiceId="inv-1", amountDue=5))
    first, second = widget_event_from_envelope(raw), widget_event_from_envelope(raw)

    assert isinstance(first, WidgetEvent)
    assert isinstance(second, WidgetEvent)
    assert first.frame == second.frame


def _without(field: str) -> bytes:
    document = envelope()
    del document[field]
    return dumps_json(document)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, DropReason.INVALID_ENVELOPE),
        (b"", DropReason.INVALID_ENVELOPE),
        (b"{nope", DropReason.INVALID_ENVELOPE),
        (b"[1]", DropReason.INVALID_ENVELOPE),
        (_without("eventId"), DropReason.INVALID_ENVELOPE),
        (_without("tenantId"), DropReason.INVALID_ENVELOPE),
        (_without("customerId"), DropReason.INVALID_ENVELOPE),
        (_without("occurredAt"), DropReason.INVALID_ENVELOPE),
        (dumps_json({**envelope(), "payload": [1]}), DropReason.INVALID_ENVELOPE),
        (dumps_json({**envelope(), "tenantId": ""}), DropReason.INVALID_ENVELOPE),
        (dumps_json(envelope("INVOICE_GENERATED")), DropReason.UNKNOWN_EVENT_TYPE),
        (dumps_json({**envelope(), "eventId": "evt\n\ndata: forged"}), DropReason.UNFRAMEABLE_EVENT_ID),
        (dumps_json({**envelope(), "eventId": "evt\r1"}), DropReason.UNFRAMEABLE_EVENT_ID),
        (
            dumps_json({**envelope(), "eventId": "e" * (MAX_EVENT_ID_LENGTH + 1)}),
            DropReason.UNFRAMEABLE_EVENT_ID,
        ),
        (
            dumps_json({**envelope(), "occurredAt": "2" * (MAX_OCCURRED_AT_LENGTH + 1)}),
            DropReason.INVALID_ENVELOPE,
        ),
        # An identifier whose escape decodes to a lone surrogate: not an identifier anyone can use.
        (json.dumps({**envelope(), "eventId": "evt\udfff"}).encode(), DropReason.INVALID_ENVELOPE),
    ],
)
def test_records_that_cannot_be_shown_are_dropped_with_a_reason(
    raw: bytes | None, reason: DropReason
) -> None:
    outcome = widget_event_from_envelope(raw)

    assert isinstance(outcome, Dropped)
    assert outcome.reason is reason


def test_sse_frame_layout() -> None:
    assert sse_frame("e1", "aforo.invoice.paid", b'{"a":1}') == (
        b'id: e1\nevent: aforo.invoice.paid\ndata: {"a":1}\n\n'
    )


JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children),
)


@given(
    st.sampled_from(sorted(WIDGET_EVENTS)),
    st.dictionaries(
        st.sampled_from(
            sorted(set().union(*WIDGET_PAYLOAD_FIELDS.values()) | {"email", "customerId", "name"})
        )
        | st.text(max_size=10),
        JSON_VALUES,
        max_size=12,
    ),
)
def test_any_payload_yields_only_allowed_scalar_fields_and_a_one_line_data_field(
    event_type: str, payload: dict[str, Any]
) -> None:
    visible = widget_payload(event_type, payload)
    assert set(visible) <= WIDGET_PAYLOAD_FIELDS[event_type]
    assert all(not isinstance(value, dict | list) for value in visible.values())
    assert not any(EMAIL.search(value) for value in visible.values() if isinstance(value, str))

    outcome = widget_event_from_envelope(dumps_json({**envelope(event_type), "payload": payload}))
    assert isinstance(outcome, WidgetEvent)
    frame = parse_frame(outcome.frame)
    assert json.loads(frame["data"])["payload"] == json.loads(dumps_json(visible))


@pytest.mark.parametrize(
    ("text", "personal"),
    [
        ("ana@example.com", True),
        ("mail: ana.lopez@mail.example.org, thanks", True),
        (JWT_LIKE, True),
        (f"Bearer {JWT_LIKE}", True),
        ("inv-2026-0001", False),
        ("x" * 5000, False),
        ("a@b", False),  # no domain with a dot: not an address
        ("@example.com", False),
        ("a@.com", False),
        ("eyJ-not-a-token", False),
    ],
)
def test_what_counts_as_personal_data_in_a_string(text: str, personal: bool) -> None:
    assert looks_personal(text) is personal


def test_oversized_values_are_dropped_so_a_frame_stays_small() -> None:
    longest = "x" * MAX_PAYLOAD_STRING_LENGTH
    payload = {
        "invoiceId": longest,
        "invoiceNumber": longest + "x",
        "amountDue": 10**38 - 1,
        "total": 10**38,
        "tax": -(10**38),
    }

    assert widget_payload("aforo.invoice.created", payload) == {"invoiceId": longest, "amountDue": 10**38 - 1}


# Every character class that makes JSON or UTF-8 longest: control characters (escaped as \u00XX),
# quotes and backslashes (escaped), and characters outside the BMP (4 bytes in UTF-8).
WIDE_TEXT = st.text(alphabet=st.sampled_from(["\x01", '"', "\\", "\U0001f600", "\u00e9", "a"]))


@given(
    st.sampled_from(sorted(WIDGET_EVENTS)),
    WIDE_TEXT.filter(lambda text: "\x01" not in text),
    st.data(),
)
def test_no_frame_is_larger_than_max_frame_bytes(event_type: str, event_id: str, data: st.DataObject) -> None:
    fill = data.draw(st.sampled_from(["max", "drawn"]))
    payload: dict[str, Any] = {}
    for name in WIDGET_PAYLOAD_FIELDS[event_type]:
        if fill == "max":
            payload[name] = "\x01" * MAX_PAYLOAD_STRING_LENGTH
        else:
            payload[name] = data.draw(WIDE_TEXT.map(lambda text: text[:MAX_PAYLOAD_STRING_LENGTH]))
    document = {
        **envelope(event_type),
        "eventId": (event_id or "e")[:MAX_EVENT_ID_LENGTH],
        "occurredAt": "\x01" * MAX_OCCURRED_AT_LENGTH,
        "payload": payload,
    }

    outcome = widget_event_from_envelope(dumps_json(document))

    assert isinstance(outcome, WidgetEvent)
    assert len(outcome.frame) <= MAX_FRAME_BYTES


def test_a_payload_value_with_a_lone_surrogate_is_shown_with_its_escape() -> None:
    # Valid JSON whose escape decodes to a lone surrogate: the frame carries the escape (valid UTF-8,
    # the same JSON value for the browser), rather than dropping the event.
    outcome = widget_event_from_envelope(json.dumps(envelope(invoiceId="inv\ud800")).encode())

    assert not isinstance(outcome, Dropped)
    outcome.frame.decode("utf-8")
    assert b'"invoiceId":"inv\\ud800"' in outcome.frame
