"""Outcome classification, what follows an attempt, and the delivery-log row written for it."""

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from aforo.dispatcher.delivery_log import (
    RESPONSE_BODY_LIMIT_BYTES,
    UNIQUE_KEY_FIELDS,
    AttemptVerdict,
    DeadLetterReason,
    DeliveryLogRow,
    Outcome,
    classify_response,
    judge_attempt,
    response_body_excerpt,
)
from aforo.dispatcher.outbound import OutboundAddressRefused
from aforo.dispatcher.retry_schedule import RetryConfig, RetryPlan
from aforo.shared.delivery import Channel, DeliveryStatus, SkipReason
from aforo.shared.envelope import EventEnvelope

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
CAP = 3600.0
ENVELOPE = EventEnvelope(
    event_id="evt-1",
    event_type="INVOICE_GENERATED",
    category="Billing",
    severity="INFO",
    tenant_id="t1",
    customer_id="c1",
    occurred_at=NOW,
    payload={"amountDue": 12000},
)
REFUSAL_BY_IP = str(OutboundAddressRefused("10.0.0.5", "refused: 10.0.0.5 is a private address"))
REFUSAL_BY_NAME = str(OutboundAddressRefused("hooks.internal", "refused: 10.0.0.5 is a private address"))


@pytest.mark.parametrize(
    ("status", "error", "outcome"),
    [
        (200, None, Outcome.DELIVERED),
        (201, None, Outcome.DELIVERED),
        (204, None, Outcome.DELIVERED),
        (299, None, Outcome.DELIVERED),
        (200, "connection reset while reading the body", Outcome.DELIVERED),
        (199, None, Outcome.RETRYABLE),
        (301, None, Outcome.RETRYABLE),
        (400, None, Outcome.RETRYABLE),
        (404, None, Outcome.RETRYABLE),
        (410, None, Outcome.GONE),
        (429, None, Outcome.RETRYABLE),
        (500, None, Outcome.RETRYABLE),
        (503, None, Outcome.RETRYABLE),
        (None, "timeout after 10.0 s", Outcome.RETRYABLE),
        (
            None,
            "Cannot connect to host hooks.example.com:443 ssl:default [Connection refused]",
            Outcome.RETRYABLE,
        ),
        (None, "Connection refused: port closed", Outcome.RETRYABLE),
        (None, REFUSAL_BY_IP, Outcome.REFUSED),
        (None, REFUSAL_BY_NAME, Outcome.REFUSED),
        (None, "refused: no address resolved", Outcome.REFUSED),
    ],
)
def test_classify_response(status: int | None, error: str | None, outcome: Outcome) -> None:
    assert classify_response(status, error) is outcome


def test_outbound_refusals_start_as_classified() -> None:
    # Guards the coupling with aforo.dispatcher.outbound's message format.
    assert REFUSAL_BY_IP.startswith("refused:")
    assert REFUSAL_BY_NAME.startswith("hooks.internal: refused:")


def test_classify_needs_a_status_or_an_error() -> None:
    with pytest.raises(ValueError, match="status, error"):
        classify_response(None, None)


@pytest.mark.parametrize(
    ("attempt", "outcome", "retry_after", "verdict"),
    [
        (1, Outcome.DELIVERED, None, AttemptVerdict(Outcome.DELIVERED, DeliveryStatus.DELIVERED)),
        (3, Outcome.DELIVERED, None, AttemptVerdict(Outcome.DELIVERED, DeliveryStatus.DELIVERED)),
        (
            1,
            Outcome.RETRYABLE,
            None,
            AttemptVerdict(Outcome.RETRYABLE, DeliveryStatus.RETRYING, retry=RetryPlan(2, 2.0)),
        ),
        (
            1,
            Outcome.RETRYABLE,
            120.0,
            AttemptVerdict(Outcome.RETRYABLE, DeliveryStatus.RETRYING, retry=RetryPlan(2, 120.0, True)),
        ),
        (
            3,
            Outcome.RETRYABLE,
            None,
            AttemptVerdict(
                Outcome.RETRYABLE,
                DeliveryStatus.FAILED,
                dead_letter_reason=DeadLetterReason.RETRIES_EXHAUSTED,
            ),
        ),
        (
            1,
            Outcome.GONE,
            None,
            AttemptVerdict(
                Outcome.GONE,
                DeliveryStatus.FAILED,
                disable_endpoint=True,
                dead_letter_reason=DeadLetterReason.ENDPOINT_GONE,
            ),
        ),
        (
            1,
            Outcome.REFUSED,
            None,
            AttemptVerdict(
                Outcome.REFUSED, DeliveryStatus.FAILED, dead_letter_reason=DeadLetterReason.OUTBOUND_REFUSED
            ),
        ),
    ],
)
def test_judge_attempt(
    attempt: int, outcome: Outcome, retry_after: float | None, verdict: AttemptVerdict
) -> None:
    assert judge_attempt(attempt, outcome, RetryConfig(), retry_after, CAP) == verdict


@pytest.mark.parametrize(
    ("body", "limit", "excerpt"),
    [
        (None, 4096, None),
        (b"", 4096, ""),
        (b'{"ok":true}', 4096, '{"ok":true}'),
        (b"x" * 5000, 4096, "x" * 4096),
        (b"ok \xff\xfe", 4096, "ok \ufffd\ufffd"),
        ("é".encode() * 3, 5, "éé\ufffd"),
        (b"abc", 0, None),  # 0 turns response capture off
    ],
)
def test_response_body_excerpt(body: bytes | None, limit: int, excerpt: str | None) -> None:
    assert response_body_excerpt(body, limit) == excerpt


def test_response_body_limit_default() -> None:
    assert RESPONSE_BODY_LIMIT_BYTES == 4096
    with pytest.raises(ValueError, match="limit_bytes"):
        response_body_excerpt(b"x", -1)


def test_skipped_row_document() -> None:
    row = DeliveryLogRow.skipped(
        ENVELOPE,
        Channel.WEBHOOK,
        SkipReason.THRESHOLD,
        created_at=NOW,
        detail="payload field 'amountDue' is missing",
    )
    assert row.to_document() == {
        "tenantId": "t1",
        "endCustomerId": "c1",
        "eventId": "evt-1",
        "eventType": "INVOICE_GENERATED",
        "channel": "WEBHOOK",
        "endpointId": None,
        "attempt": 0,
        "status": "SKIPPED",
        "skipReason": "threshold",
        "error": "payload field 'amountDue' is missing",
        "responseStatus": None,
        "responseBody": None,
        "durationMs": None,
        "createdAt": NOW,
        "nextAttemptAt": None,
    }
    assert row.key_filter() == {
        "tenantId": "t1",
        "eventId": "evt-1",
        "channel": "WEBHOOK",
        "endpointId": None,
        "attempt": 0,
    }


def test_document_values_are_plain_types() -> None:
    row = DeliveryLogRow.skipped(ENVELOPE, Channel.EMAIL, SkipReason.COOLDOWN, created_at=NOW)
    document = row.to_document()
    assert type(document["channel"]) is str
    assert type(document["status"]) is str
    assert type(document["skipReason"]) is str
    assert set(UNIQUE_KEY_FIELDS) <= set(document)


def test_retrying_row_carries_the_next_attempt_time() -> None:
    verdict = judge_attempt(1, classify_response(503, None), RetryConfig(), 30.0, CAP)
    row = DeliveryLogRow.attempted(
        ENVELOPE,
        endpoint_id="ep-1",
        attempt=1,
        verdict=verdict,
        created_at=NOW,
        response_status=503,
        response_body=b"busy" * 2000,
        duration_ms=812.5,
    )
    assert row.status is DeliveryStatus.RETRYING
    assert row.next_attempt_at == NOW + timedelta(seconds=30)
    assert row.response_body == ("busy" * 2000)[:4096]
    assert row.unique_key == ("t1", "evt-1", "WEBHOOK", "ep-1", 1)


def test_last_failed_attempt_keeps_the_verbatim_error() -> None:
    error = "Cannot connect to host hooks.example.com:443 ssl:default [Connection refused]"
    verdict = judge_attempt(3, classify_response(None, error), RetryConfig(), None, CAP)
    row = DeliveryLogRow.attempted(
        ENVELOPE, endpoint_id="ep-1", attempt=3, verdict=verdict, created_at=NOW, error=error, duration_ms=3.0
    )
    document = row.to_document()
    assert (document["status"], document["error"], document["nextAttemptAt"]) == ("FAILED", error, None)


def test_times_are_stored_in_utc() -> None:
    paris = timezone(timedelta(hours=1))
    row = DeliveryLogRow.pending(ENVELOPE, endpoint_id="ep-1", attempt=1, created_at=NOW.astimezone(paris))
    assert row.created_at == NOW
    assert row.created_at.tzinfo is UTC


def test_row_round_trips_through_a_stored_document() -> None:
    verdict = AttemptVerdict(Outcome.DELIVERED, DeliveryStatus.DELIVERED)
    row = DeliveryLogRow.attempted(
        ENVELOPE,
        endpoint_id="ep-1",
        attempt=2,
        verdict=verdict,
        created_at=NOW,
        response_status=200,
        response_body=b"ok",
        duration_ms=40.0,
    )
    stored = {"_id": "65f0c0ffee", **row.to_document()}
    assert DeliveryLogRow.from_document(stored) == row


def _row(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "tenantId": "t1",
        "endCustomerId": "c1",
        "eventId": "evt-1",
        "eventType": "INVOICE_GENERATED",
        "channel": "WEBHOOK",
        "endpointId": "ep-1",
        "attempt": 1,
        "status": "DELIVERED",
        "createdAt": NOW,
    }
    return {**base, **changes}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"status": "SKIPPED", "attempt": 0}, "skipReason"),
        ({"skipReason": "cooldown"}, "skipReason"),
        ({"status": "SKIPPED", "skipReason": "cooldown", "attempt": 1}, "attempt"),
        ({"attempt": 0}, "attempt"),
        ({"attempt": -1}, "attempt"),
        ({"status": "RETRYING"}, "nextAttemptAt"),
        ({"nextAttemptAt": NOW}, "nextAttemptAt"),
        ({"endpointId": None}, "endpointId"),
        ({"createdAt": datetime(2026, 1, 1)}, "timezone-aware"),
        ({"status": "LOST"}, "status"),
        ({"skipReason": "bored", "status": "SKIPPED", "attempt": 0}, "skipReason"),
        ({"channel": "FAX"}, "channel"),
        ({"durationMs": -1}, "durationMs"),
        ({"surprise": True}, "surprise"),
    ],
)
def test_inconsistent_rows_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        DeliveryLogRow.from_document(_row(**changes))


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"channel": "EMAIL", "endpointId": None},
        {"status": "PENDING"},
        {"status": "PENDING", "nextAttemptAt": NOW},
        {"status": "RETRYING", "nextAttemptAt": NOW, "error": "timeout"},
        {"status": "FAILED", "responseStatus": 410},
        {"status": "SKIPPED", "attempt": 0, "skipReason": "endpoint_filter"},
    ],
)
def test_consistent_rows_are_accepted(changes: dict[str, Any]) -> None:
    assert DeliveryLogRow.from_document(_row(**changes)).to_document()["status"] == _row(**changes)["status"]
