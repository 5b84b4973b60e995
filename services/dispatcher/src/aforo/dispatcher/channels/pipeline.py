"""EMAIL, SMS and PAGERDUTY on the dispatcher's seams (`ports`): the planner of an event's channel
deliveries and one `Sender` per provider channel.

`ChannelDispatch.plan` answers which contact destinations an event reaches (and which it cannot);
`ProviderChannelSender.send` makes one attempt at one destination: load the destination, the
provider and the template, render, send, and report a `Sent` with the channel's own verdict and the
row's facts. The orchestration (`dispatch`) does everything else as for webhooks: the attempt
ledger, the row, retries on the delay topics, dead letters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime

from aforo.dispatcher.channels import ChannelSenders
from aforo.dispatcher.channels.attempts import build_delivery, render_content
from aforo.dispatcher.channels.configuration import ChannelConfigurationReader, DestinationRecord
from aforo.dispatcher.channels.delivery import ChannelResult
from aforo.dispatcher.channels.planning import (
    MANDATORY_UNREACHED,
    PROVIDER_NOT_CONFIGURED,
    ChannelPlan,
    plan_channels,
)
from aforo.dispatcher.delivery_log import AttemptVerdict, ChannelFacts, DeliveryLogRow, Outcome
from aforo.dispatcher.ports import Sent, Unusable
from aforo.dispatcher.retry_schedule import RetryConfig
from aforo.shared.channels import NOTIFICATION_TEST_EVENT, PROVIDER_CHANNELS, ProviderMode
from aforo.shared.delivery import Channel, DeliveryStatus, SkipReason
from aforo.shared.envelope import EventEnvelope

NOT_SENT = AttemptVerdict(Outcome.REJECTED, DeliveryStatus.FAILED)
"""A delivery that cannot be attempted at all (no provider, destination gone): FAILED, not retried."""
TEST_MODE_NOTE = "test mode"
AMBIGUOUS_NOTE = "ambiguous timeout: the provider may have sent it (SMS is retried at most once)"


def scrubbed(result: ChannelResult, destination: DestinationRecord) -> ChannelResult:
    """The result with the destination's address masked wherever the provider echoed it (an SMTP
    `550 <jane@acme.com>: ...`, a Twilio body with `"to"`): rows and logs show masked addresses only."""
    pattern = re.compile(re.escape(destination.address), re.IGNORECASE)
    masked = destination.document.masked_address

    def clean(text: str | None) -> str | None:
        return None if text is None else pattern.sub(masked, text)

    return replace(
        result,
        error=clean(result.error),
        response_body=clean(result.response_body),
        reference=clean(result.reference),
    )


def undeliverable_row(
    envelope: EventEnvelope, channel: Channel, destination: DestinationRecord, reason: str, now: datetime
) -> DeliveryLogRow:
    row = DeliveryLogRow.attempted(
        envelope,
        endpoint_id=destination.destination_id,
        attempt=1,
        verdict=NOT_SENT,
        created_at=now,
        error=reason,
        channel=channel,
    )
    return row.with_facts(ChannelFacts(destination.destination_id, destination.document.masked_address))


class ChannelDispatch:
    """The `ChannelPlanner` of the dispatcher, and the factory of its provider channel senders."""

    def __init__(self, config: ChannelConfigurationReader, senders: ChannelSenders) -> None:
        self.config = config
        self.senders = senders

    def sender(self, channel: Channel) -> ProviderChannelSender:
        return ProviderChannelSender(channel, self)

    async def plan(self, envelope: EventEnvelope, chosen: Iterable[Channel]) -> ChannelPlan:
        channels = set(chosen) & PROVIDER_CHANNELS
        if not channels:
            return ChannelPlan()
        tenant = envelope.tenant_id
        destinations = await self.config.destinations(tenant, envelope.customer_id)
        configured = {
            channel for channel in channels if await self.config.provider(tenant, channel) is not None
        }
        return plan_channels(envelope.event_type, channels, destinations, configured)

    @staticmethod
    def plan_rows(
        envelope: EventEnvelope, plan: ChannelPlan, *, now: datetime, mandatory_unreached: bool
    ) -> list[DeliveryLogRow]:
        """The rows of the deliveries a plan cannot make: SKIPPED `no_destination` (FAILED when a
        mandatory event reached nobody) and FAILED `provider_not_configured` per destination."""
        rows: list[DeliveryLogRow] = []
        for channel in plan.no_destination:
            if mandatory_unreached:
                rows.append(
                    DeliveryLogRow.attempted(
                        envelope,
                        endpoint_id=None,
                        attempt=1,
                        verdict=NOT_SENT,
                        created_at=now,
                        error=MANDATORY_UNREACHED,
                        channel=channel,
                    )
                )
            else:
                rows.append(
                    DeliveryLogRow.skipped(envelope, channel, SkipReason.NO_DESTINATION, created_at=now)
                )
        for channel, destination in plan.not_configured:
            rows.append(undeliverable_row(envelope, channel, destination, PROVIDER_NOT_CONFIGURED, now))
        return rows


class ProviderChannelSender:
    """The `ports.Sender` of one provider channel: one attempt at one contact destination."""

    def __init__(self, channel: Channel, dispatch: ChannelDispatch) -> None:
        self.channel = channel
        self._dispatch = dispatch

    async def send(
        self, envelope: EventEnvelope, body: bytes, destination_id: str, attempt: int
    ) -> Sent | Unusable:
        config = self._dispatch.config
        tenant = envelope.tenant_id
        destination = await config.destination(tenant, destination_id)
        if destination is None or destination.document.end_customer_id != envelope.customer_id:
            return Unusable("destination was deleted", ChannelFacts(destination_id))
        facts = ChannelFacts(destination_id, destination.document.masked_address)
        if not destination.document.active and envelope.event_type != NOTIFICATION_TEST_EVENT:
            return Unusable("destination is inactive", facts)
        provider = await config.provider(tenant, self.channel)
        if provider is None:
            return Unusable(PROVIDER_NOT_CONFIGURED, facts)
        override = await config.template(tenant, envelope.event_type, self.channel)
        display_name = await config.display_name(tenant, envelope.event_type)
        content, fallback_note = render_content(envelope, self.channel, override, display_name)
        ambiguous = 0
        if self.channel is Channel.SMS and attempt > 1:
            ambiguous = await config.ambiguous_attempts(
                tenant, envelope.event_id, self.channel, destination_id, before_attempt=attempt
            )
        delivery = build_delivery(
            envelope, destination, provider, content, attempt=attempt, ambiguous_attempts=ambiguous
        )
        result = scrubbed(await self._dispatch.senders.send(delivery), destination)
        notes = [TEST_MODE_NOTE] if provider.document.mode is ProviderMode.TEST else []
        notes += [note for note in (fallback_note,) if note]
        if result.ambiguous:
            notes.append(AMBIGUOUS_NOTE)
        document = provider.document
        return Sent(
            status=result.response_status,
            error=result.error,
            response_body=None if result.response_body is None else result.response_body.encode(),
            duration_ms=result.duration_ms,
            retry_after=None,
            retry_config=RetryConfig(
                document.max_retry_attempts, document.initial_backoff_seconds, document.backoff_multiplier
            ),
            refused=result.outcome is Outcome.REFUSED,
            outcome=result.outcome,
            retry_after_seconds=result.retry_after_seconds,
            facts=replace(facts, provider_reference=result.reference, note="; ".join(notes) or None),
        )
