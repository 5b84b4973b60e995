"""Which channel deliveries an event makes, the content rendered for them and the rows they leave."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from aforo.dispatcher.channels.attempts import render_content
from aforo.dispatcher.channels.configuration import DestinationRecord
from aforo.dispatcher.channels.delivery import ChannelResult
from aforo.dispatcher.channels.planning import mandatory_unreached, plan_channels
from aforo.dispatcher.delivery_log import (
    ChannelFacts,
    DeadLetterReason,
    DeliveryLogRow,
    Outcome,
    judge_attempt,
)
from aforo.dispatcher.retry_schedule import RetryConfig
from aforo.shared.channels import ContactDestinationDocument
from aforo.shared.delivery import Channel, DeliveryStatus
from aforo.shared.envelope import EventEnvelope, Severity
from aforo.shared.templates import SmsContent, TemplateParts

NOW = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
E, S, P, W = Channel.EMAIL, Channel.SMS, Channel.PAGERDUTY, Channel.WEBHOOK


def destination(destination_id: str, channel: Channel, **changes: Any) -> DestinationRecord:
    address = {"EMAIL": "jane@acme.com", "SMS": "+447911123123", "PAGERDUTY": "K" * 32}[channel.value]
    document = ContactDestinationDocument.model_validate(
        {
            "tenantId": "t1",
            "destinationId": destination_id,
            "endCustomerId": "c1",
            "channel": channel,
            "address": None if channel is P else address,
            "addressCiphertext": "ct" if channel is P else None,
            "addressKey": destination_id,
            "maskedAddress": "j***@acme.com" if channel is E else "masked",
            "createdAt": NOW,
            "updatedAt": NOW,
            **changes,
        }
    )
    return DestinationRecord(document, address)


def ids(pairs: list[tuple[Channel, DestinationRecord]]) -> list[tuple[str, str]]:
    return [(channel.value, record.destination_id) for channel, record in pairs]


def test_one_delivery_per_active_subscribed_destination_of_each_chosen_channel() -> None:
    destinations = [
        destination("e1", E),
        destination("e2", E, events=["PAYMENT_OVERDUE"]),
        destination("e3", E, active=False),
        destination("s1", S),
        destination("p1", P),
    ]

    plan = plan_channels("INVOICE_GENERATED", {E, S, W}, destinations, {E, S, P})

    assert ids(plan.deliver) == [("EMAIL", "e1"), ("SMS", "s1")]
    assert (plan.no_destination, plan.not_configured) == ([], [])


@pytest.mark.parametrize(
    ("chosen", "destinations", "configured", "deliver", "no_destination", "not_configured"),
    [
        ({S}, [destination("e1", E)], {E, S}, [], [S], []),
        ({E}, [destination("e1", E)], set(), [], [], [("EMAIL", "e1")]),
        ({E}, [], set(), [], [E], []),
        ({W}, [destination("e1", E)], {E}, [], [], []),
        (
            {E, P},
            [destination("e1", E), destination("p1", P)],
            {P},
            [("PAGERDUTY", "p1")],
            [],
            [("EMAIL", "e1")],
        ),
    ],
    ids=["no-sms-destination", "no-provider", "neither", "webhook-only", "mixed"],
)
def test_skips_and_missing_providers(
    chosen: set[Channel],
    destinations: list[DestinationRecord],
    configured: set[Channel],
    deliver: list[tuple[str, str]],
    no_destination: list[Channel],
    not_configured: list[tuple[str, str]],
) -> None:
    plan = plan_channels("INVOICE_GENERATED", chosen, destinations, configured)

    assert (ids(plan.deliver), plan.no_destination, ids(plan.not_configured)) == (
        deliver,
        no_destination,
        not_configured,
    )


def test_a_targeted_test_reaches_its_destination_even_inactive_or_filtered() -> None:
    destinations = [destination("e1", E, active=False, events=["PAYMENT_OVERDUE"]), destination("e2", E)]

    plan = plan_channels("notification.test", {E}, destinations, {E}, target_destination_id="e1")

    assert ids(plan.deliver) == [("EMAIL", "e1")]


@pytest.mark.parametrize(
    ("mandatory", "channel_deliveries", "webhooks", "failed"),
    [(True, 0, 0, True), (True, 1, 0, False), (True, 0, 2, False), (False, 0, 0, False)],
)
def test_a_mandatory_event_that_reaches_nobody_fails(
    mandatory: bool, channel_deliveries: int, webhooks: int, failed: bool
) -> None:
    assert mandatory_unreached(mandatory, channel_deliveries, webhooks) is failed


def event(payload: dict[str, Any]) -> EventEnvelope:
    return EventEnvelope(
        event_id="e-1",
        event_type="INVOICE_GENERATED",
        category="Billing",
        severity=Severity.INFO,
        tenant_id="t1",
        customer_id="c1",
        occurred_at=NOW,
        payload=payload,
    )


def test_an_override_that_does_not_render_this_event_falls_back_to_the_builtin_and_says_so() -> None:
    override = TemplateParts(text="Invoice {{ payload.invoiceNumber }}")

    used, used_note = render_content(event({"invoiceNumber": "INV-9"}), S, override, None)
    fallback, fallback_note = render_content(event({}), S, override, None)

    assert used == SmsContent("Invoice INV-9")
    assert used_note is None
    assert isinstance(fallback, SmsContent)
    assert fallback.body.startswith("Your invoice is ready.")
    assert fallback_note is not None
    assert "invoiceNumber" in fallback_note


def test_a_channel_row_names_the_destination_masked_and_the_providers_reference() -> None:
    verdict = judge_attempt(1, Outcome.DELIVERED, RetryConfig(), None, 3600)
    row = DeliveryLogRow.attempted(
        event({}),
        endpoint_id="e1",
        attempt=1,
        verdict=verdict,
        created_at=NOW,
        response_status=250,
        channel=E,
    ).with_facts(ChannelFacts("e1", "j***@acme.com", "250 2.0.0 queued as M1"))

    document = row.to_document()

    assert (document["channel"], document["status"], document["endpointId"], document["destinationId"]) == (
        "EMAIL",
        DeliveryStatus.DELIVERED.value,
        "e1",
        "e1",
    )
    assert (document["maskedAddress"], document["providerReference"], document["responseStatus"]) == (
        "j***@acme.com",
        "250 2.0.0 queued as M1",
        250,
    )
    assert "note" not in document  # channel-only fields that are empty stay out of the document


def test_a_provider_rejection_fails_without_retry_and_is_dead_lettered_as_such() -> None:
    verdict = judge_attempt(1, Outcome.REJECTED, RetryConfig(), None, 3600)

    assert (verdict.status, verdict.retry, verdict.dead_letter_reason) == (
        DeliveryStatus.FAILED,
        None,
        DeadLetterReason.PROVIDER_REJECTED,
    )


def test_addresses_the_provider_echoed_are_masked_before_rows_and_logs() -> None:
    from aforo.dispatcher.channels.pipeline import scrubbed

    result = ChannelResult(
        Outcome.REJECTED,
        5.0,
        error="550 5.1.1 <JANE@acme.com>: Recipient address rejected",
        response_body='{"to": "jane@acme.com"}',
    )

    clean = scrubbed(result, destination("e1", E))

    assert clean.error == "550 5.1.1 <j***@acme.com>: Recipient address rejected"
    assert clean.response_body == '{"to": "j***@acme.com"}'
    assert clean.outcome is Outcome.REJECTED
