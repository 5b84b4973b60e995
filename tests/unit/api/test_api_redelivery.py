"""Replays, recoveries, the webhook.test probe and the manual emit: the records the API sends."""

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from aforo.api.problems import ConflictError, invalid_request_from
from aforo.api.redelivery import (
    WEBHOOK_TEST_MESSAGE,
    RecoverQuery,
    recovery_rows,
    replay_request,
    webhook_test_request,
)
from aforo.api.resources.custom_events.rules import EmitRequest, custom_envelope
from aforo.dispatcher.selection import webhook_test_target
from aforo.shared.dispatch_requests import DispatchRequest, DispatchRequestKind
from aforo.shared.envelope import EventEnvelope

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
ENVELOPE: dict[str, Any] = {
    "eventId": "evt-1",
    "eventType": "INVOICE_GENERATED",
    "category": "Billing",
    "severity": "INFO",
    "tenantId": "t1",
    "customerId": "c1",
    "occurredAt": "2026-11-22T08:00:00.000Z",
    "payload": {"amountDue": 2**70, "currency": "EUR"},
}


def row(**overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "deliveryId": "d-1",
        "tenantId": "t1",
        "endCustomerId": "c1",
        "eventId": "evt-1",
        "channel": "WEBHOOK",
        "endpointId": "ep-1",
        "status": "FAILED",
        "attempt": 3,
        "createdAt": NOW,
        "envelopeJson": json.dumps(ENVELOPE, separators=(",", ":")),
    }
    document.update(overrides)
    return document


@pytest.mark.parametrize("status", ["FAILED", "SKIPPED"])
def test_a_replay_carries_the_stored_envelope_unchanged(status: str) -> None:
    request = replay_request(row(status=status), now=NOW)

    assert (request.kind, request.endpoint_id, request.tenant_id, request.replay_of) == (
        DispatchRequestKind.REPLAY,
        "ep-1",
        "t1",
        "d-1",
    )
    assert request.envelope.to_wire() == ENVELOPE
    assert request.key == b"t1:c1"


def test_a_row_written_before_envelope_json_replays_its_envelope_document() -> None:
    legacy = row(status="FAILED")
    del legacy["envelopeJson"]
    legacy["envelope"] = ENVELOPE
    assert replay_request(legacy, now=NOW).envelope.to_wire() == ENVELOPE


def test_a_payload_bson_cannot_hold_replays_from_the_stored_text() -> None:
    hostile = {**ENVELOPE, "payload": {"big": 1180591620717411303424, "a\u0000b": {"$x.y": 1}}}
    text = json.dumps(hostile, separators=(",", ":"))
    request = replay_request(row(status="FAILED", envelopeJson=text), now=NOW)
    assert request.envelope.payload == {"big": 1180591620717411303424, "a\u0000b": {"$x.y": 1}}


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"status": "DELIVERED"}, "status"),
        ({"status": "PENDING"}, "status"),
        ({"status": "RETRYING"}, "status"),
        ({"channel": "EMAIL", "endpointId": None}, "endpointId"),
        ({"endpointId": None}, "endpointId"),
        ({"envelopeJson": None}, "envelope"),
        ({"envelopeJson": json.dumps({**ENVELOPE, "severity": "LOUD"})}, "envelope"),
        ({"envelopeJson": "[" * 5000}, "envelope"),
    ],
)
def test_what_cannot_be_replayed_is_409_naming_why(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ConflictError) as refused:
        replay_request(row(**overrides), now=NOW)

    assert (refused.value.code, refused.value.field) == ("delivery_not_replayable", field)


def test_recovery_takes_each_failed_event_once_and_skips_the_delivered_ones() -> None:
    rows = [
        row(deliveryId="a1", eventId="a", attempt=1),
        row(deliveryId="b1", eventId="b"),
        row(deliveryId="a2", eventId="a", attempt=2),
        row(deliveryId="c1", eventId="c"),
        row(deliveryId="x", eventId="d", status="SKIPPED"),
    ]

    chosen = recovery_rows(rows, frozenset({"c"}))

    assert [chosen_row["deliveryId"] for chosen_row in chosen] == ["b1", "a2"]


def test_the_recovery_window_is_validated() -> None:
    window = RecoverQuery.model_validate(
        {"since": "2026-11-01T00:00:00Z", "until": "2026-11-02T00:00:00+00:00"}
    )
    assert window.until is not None
    assert window.until - window.since == timedelta(days=1)

    for params, field in (({}, "since"), ({"since": "2026-11-01"}, "since")):
        with pytest.raises(ValidationError) as error:
            RecoverQuery.model_validate(params)
        assert invalid_request_from(error.value).field == field
    with pytest.raises(ValidationError) as backwards:
        RecoverQuery.model_validate({"since": "2026-11-02T00:00:00Z", "until": "2026-11-01T00:00:00Z"})
    assert "until must be after since" in invalid_request_from(backwards.value).message


def test_the_probe_names_its_target_the_way_the_dispatcher_reads_it() -> None:
    endpoint = {"endpointId": "ep-9", "tenantId": "t1", "endCustomerId": "c7"}

    probe = webhook_test_request(endpoint, event_id="e-9", now=NOW)

    assert (probe.kind, probe.endpoint_id, probe.replay_of) == (DispatchRequestKind.TEST, "ep-9", None)
    assert probe.envelope.to_wire() == {
        "eventId": "e-9",
        "eventType": "webhook.test",
        "category": "Custom",
        "severity": "INFO",
        "tenantId": "t1",
        "customerId": "c7",
        "occurredAt": "2026-11-23T09:00:00.000Z",
        "payload": {"endpointId": "ep-9", "message": WEBHOOK_TEST_MESSAGE},
    }
    assert webhook_test_target(probe.envelope) == "ep-9"


def test_dispatch_requests_round_trip_on_the_wire() -> None:
    request = replay_request(row(), now=NOW)

    wire = request.to_json_bytes()
    again = DispatchRequest.from_json_bytes(wire)

    assert again == request
    assert again.to_wire() == {
        "kind": "replay",
        "endpointId": "ep-1",
        "tenantId": "t1",
        "envelope": ENVELOPE,
        "requestedAt": "2026-11-23T09:00:00.000Z",
        "replayOf": "d-1",
    }
    assert str(2**70).encode() in wire


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"tenantId": "t2"}, "envelope.tenantId"),
        ({"kind": "test"}, "envelope.eventType"),
        ({"kind": "probe"}, "kind"),
        ({"requestedAt": "2026-11-23T09:00:00"}, "timezone"),
    ],
)
def test_inconsistent_dispatch_requests_are_refused(changes: dict[str, Any], message: str) -> None:
    wire = {**replay_request(row(), now=NOW).to_wire(), **changes}

    with pytest.raises(ValidationError, match=message):
        DispatchRequest.model_validate(wire)


def test_a_test_request_replays_nothing() -> None:
    probe = webhook_test_request(
        {"endpointId": "e", "tenantId": "t1", "endCustomerId": "c1"}, event_id="x", now=NOW
    )

    with pytest.raises(ValidationError, match="replayOf"):
        DispatchRequest.model_validate({**probe.to_wire(), "replayOf": "d-1"})


def test_an_emitted_envelope_takes_the_definition_the_token_and_the_body() -> None:
    definition = {"eventType": "WHALE", "category": "Usage", "severity": "CRITICAL", "tenantId": "t1"}
    payload = {"nested": {"a": [1, 2.5, None, "ü"]}, "big": 2**64}
    body = EmitRequest.model_validate({"customerId": "c3", "payload": payload})
    event_id = str(uuid.uuid4())

    envelope = custom_envelope(definition, "t1", body, event_id=event_id, now=NOW)

    assert envelope == EventEnvelope(
        event_id=event_id,
        event_type="WHALE",
        category="Usage",
        severity="CRITICAL",
        tenant_id="t1",
        customer_id="c3",
        occurred_at=NOW,
        payload=payload,
    )
    assert envelope.partition_key == b"t1:c3"
