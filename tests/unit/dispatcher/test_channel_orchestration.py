"""EMAIL/SMS/PAGERDUTY through the dispatch orchestration against in-memory fakes: one attempt per
destination, the channel's own verdict and facts in the row, the plan's skips and failures, and a
mandatory event that reaches no one."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aforo.dispatcher.channels.configuration import DestinationRecord
from aforo.dispatcher.channels.planning import ChannelPlan, plan_channels
from aforo.dispatcher.delivery_log import ChannelFacts, Outcome
from aforo.dispatcher.dispatch import AttemptJob
from aforo.dispatcher.ports import Sent, Unusable
from aforo.dispatcher.preferences import PreferenceView
from aforo.dispatcher.retry_schedule import RetryConfig
from aforo.shared.channels import ContactDestinationDocument
from aforo.shared.delivery import Channel, DeliveryStatus, SkipReason
from aforo.shared.envelope import EventEnvelope
from tests.support.fakes import DispatcherWorld, dispatcher_world, invoice_envelope

NOW = datetime(2026, 1, 1, tzinfo=UTC)
E, S = Channel.EMAIL, Channel.SMS


def destination(destination_id: str, channel: Channel, customer: str = "c1") -> DestinationRecord:
    address = "jane@acme.com" if channel is E else "+447911123123"
    document = ContactDestinationDocument(
        tenant_id="t1",
        destination_id=destination_id,
        end_customer_id=customer,
        channel=channel,
        address=address,
        address_key=destination_id,
        masked_address="j***@acme.com" if channel is E else "+4479*****123",
        created_at=NOW,
        updated_at=NOW,
    )
    return DestinationRecord(document, address)


@dataclass
class FakePlanner:
    destinations: list[DestinationRecord] = field(default_factory=list)
    configured: set[Channel] = field(default_factory=lambda: {E, S})

    async def plan(self, envelope: EventEnvelope, chosen: frozenset[Channel]) -> ChannelPlan:
        return plan_channels(envelope.event_type, chosen, self.destinations, self.configured)


@dataclass
class FakeChannelSender:
    """Answers with a channel verdict per attempt, as the provider senders do."""

    channel: Channel
    outcomes: list[Outcome] = field(default_factory=list)
    sends: list[tuple[str, int]] = field(default_factory=list)

    async def send(
        self, envelope: EventEnvelope, body: bytes, destination_id: str, attempt: int
    ) -> Sent | Unusable:
        self.sends.append((destination_id, attempt))
        outcome = self.outcomes.pop(0) if self.outcomes else Outcome.DELIVERED
        return Sent(
            status=250 if outcome is Outcome.DELIVERED else 550,
            error=None if outcome is Outcome.DELIVERED else "550 5.1.1 no such mailbox",
            response_body=None,
            duration_ms=3.0,
            retry_after=None,
            retry_config=RetryConfig(3, 2.0, 2.0),
            outcome=outcome,
            retry_after_seconds=45.0 if outcome is Outcome.RETRYABLE else None,
            facts=ChannelFacts(
                destination_id, "j***@acme.com", "250 queued" if outcome is Outcome.DELIVERED else None
            ),
        )


def channel_world(destinations: Iterable[DestinationRecord], **senders: FakeChannelSender) -> DispatcherWorld:
    world = dispatcher_world()
    world.dispatcher.senders = {
        **world.dispatcher.senders,
        **{Channel(name): s for name, s in senders.items()},
    }
    world.dispatcher.channel_planner = FakePlanner(list(destinations))
    return world


async def test_each_destination_gets_one_attempt_and_its_row_names_it_masked() -> None:
    email = FakeChannelSender(E)
    world = channel_world([destination("cd-1", E), destination("cd-2", E)], EMAIL=email)
    world.config.preferences[("t1", "c1", "INVOICE_GENERATED")] = PreferenceView(channels=frozenset({E}))
    envelope = invoice_envelope()

    for _ in range(2):  # a redelivered record sends nothing again
        await world.dispatcher.dispatch_event(envelope, envelope.to_json_bytes())

    assert sorted(email.sends) == [("cd-1", 1), ("cd-2", 1)]
    delivered = sorted(
        (row.destination_id, row.provider_reference, row.masked_address)
        for row in world.sink.rows
        if row.channel is E
    )
    assert delivered == [("cd-1", "250 queued", "j***@acme.com"), ("cd-2", "250 queued", "j***@acme.com")]


async def test_the_channels_verdict_wins_over_the_status_and_its_wait_is_honoured() -> None:
    email = FakeChannelSender(E, [Outcome.RETRYABLE, Outcome.REJECTED])
    world = channel_world([destination("cd-1", E)], EMAIL=email)
    world.config.preferences[("t1", "c1", "INVOICE_GENERATED")] = PreferenceView(channels=frozenset({E}))
    envelope = invoice_envelope()
    body = envelope.to_json_bytes()

    await world.dispatcher.dispatch_event(envelope, body)
    [parked] = world.parked()
    await world.dispatcher.run_attempt(AttemptJob(envelope, body, "cd-1", 2, channel=E))

    assert (parked.endpoint_id, parked.attempt, parked.channel) == ("cd-1", 2, E)
    rows = [row for row in world.sink.rows if row.channel is E]
    assert [row.status for row in rows] == [DeliveryStatus.RETRYING, DeliveryStatus.FAILED]
    assert rows[0].next_attempt_at is not None
    assert (rows[0].next_attempt_at - rows[0].created_at).total_seconds() == 45.0
    [dead] = world.producer.on(world.topics.dispatch_dead_letter)
    assert dead.header("aforo-dlq-reason") == "provider_rejected"


async def test_no_destination_is_skipped_and_no_provider_fails_without_a_send() -> None:
    email, sms = FakeChannelSender(E), FakeChannelSender(S)
    world = channel_world([destination("cd-1", E)], EMAIL=email, SMS=sms)
    world.dispatcher.channel_planner = FakePlanner([destination("cd-1", E)], configured=set())
    world.config.preferences[("t1", "c1", "INVOICE_GENERATED")] = PreferenceView(channels=frozenset({E, S}))
    envelope = invoice_envelope()

    await world.dispatcher.dispatch_event(envelope, envelope.to_json_bytes())

    assert (email.sends, sms.sends) == ([], [])
    rows = sorted((row.channel.value, row.status, row.skip_reason, row.error) for row in world.sink.rows)
    assert rows == [
        ("EMAIL", DeliveryStatus.FAILED, None, "provider_not_configured"),
        ("SMS", DeliveryStatus.SKIPPED, SkipReason.NO_DESTINATION, None),
        ("WEBHOOK", DeliveryStatus.SKIPPED, SkipReason.CHANNEL_NOT_CHOSEN, None),
    ]


async def test_a_mandatory_event_that_reaches_no_one_is_failed_on_every_chosen_channel() -> None:
    world = channel_world([], SMS=FakeChannelSender(S))
    world.config.preferences[("t1", "c1", "PAYMENT_OVERDUE")] = PreferenceView(channels=frozenset({S}))
    envelope = EventEnvelope.model_validate(
        {**invoice_envelope().to_wire(), "eventType": "PAYMENT_OVERDUE", "severity": "CRITICAL"}
    )

    await world.dispatcher.dispatch_event(envelope, envelope.to_json_bytes())

    rows = sorted((row.channel.value, row.status) for row in world.sink.rows)
    assert rows == [("SMS", DeliveryStatus.FAILED), ("WEBHOOK", DeliveryStatus.FAILED)]
    assert all((row.error or "").startswith("no_destination") for row in world.sink.rows)
