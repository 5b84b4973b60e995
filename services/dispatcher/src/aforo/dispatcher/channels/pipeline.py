"""The EMAIL/SMS/PAGERDUTY side of dispatching one event, for the dispatcher's orchestration to call.

`ChannelDispatch` answers the two questions the orchestration asks of a provider channel: which
deliveries an event makes (and the SKIPPED/FAILED rows of the ones it cannot make), and how one
claimed attempt at one destination went. Claiming, parking retries, settling the idempotency record
and dead-lettering stay with the orchestration, the same for every channel.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime

from aforo.dispatcher.channels import ChannelSenders
from aforo.dispatcher.channels.attempts import build_delivery, channel_row, render_content
from aforo.dispatcher.channels.configuration import ChannelConfigurationReader, DestinationRecord
from aforo.dispatcher.channels.delivery import ChannelResult
from aforo.dispatcher.channels.planning import (
    MANDATORY_UNREACHED,
    PROVIDER_NOT_CONFIGURED,
    ChannelPlan,
    plan_channels,
)
from aforo.dispatcher.delivery_log import AttemptVerdict, DeliveryLogRow, Outcome
from aforo.dispatcher.retry_schedule import RetryConfig
from aforo.shared.channels import NOTIFICATION_TEST_EVENT, PROVIDER_CHANNELS, ProviderMode
from aforo.shared.delivery import Channel, DeliveryStatus, SkipReason
from aforo.shared.envelope import EventEnvelope

NOT_SENT = AttemptVerdict(Outcome.REJECTED, DeliveryStatus.FAILED)
"""A delivery that cannot be attempted at all (no provider, destination gone): FAILED, not retried."""
TEST_MODE_NOTE = "test mode"


@dataclass(frozen=True)
class ChannelAttempt:
    """A sent attempt: what happened, the retry policy that applies, and the row's notes."""

    destination: DestinationRecord
    result: ChannelResult
    retry_config: RetryConfig
    notes: list[str] = field(default_factory=list)

    def row(
        self, envelope: EventEnvelope, attempt: int, verdict: AttemptVerdict, now: datetime
    ) -> DeliveryLogRow:
        return channel_row(
            envelope,
            self.destination,
            attempt=attempt,
            verdict=verdict,
            result=self.result,
            created_at=now,
            notes=self.notes,
        )


@dataclass(frozen=True)
class Undeliverable:
    """The attempt could not be made; `reason` is the row's error (e.g. `provider_not_configured`)."""

    reason: str
    destination: DestinationRecord | None = None

    def row(
        self, envelope: EventEnvelope, channel: Channel, destination_id: str, attempt: int, now: datetime
    ) -> DeliveryLogRow:
        row = DeliveryLogRow.attempted(
            envelope,
            endpoint_id=destination_id,
            attempt=attempt,
            verdict=NOT_SENT,
            created_at=now,
            error=self.reason,
            channel=channel,
        )
        masked = None if self.destination is None else self.destination.document.masked_address
        return row.model_copy(update={"destination_id": destination_id, "masked_address": masked})


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


class ChannelDispatch:
    def __init__(self, config: ChannelConfigurationReader, senders: ChannelSenders) -> None:
        self.config = config
        self.senders = senders

    async def plan(
        self, envelope: EventEnvelope, chosen: Iterable[Channel], *, target_destination_id: str | None = None
    ) -> ChannelPlan:
        channels = set(chosen) & PROVIDER_CHANNELS
        if not channels:
            return ChannelPlan()
        tenant = envelope.tenant_id
        if target_destination_id is not None:
            target = await self.config.destination(tenant, target_destination_id)
            destinations = (
                [] if target is None or target.document.end_customer_id != envelope.customer_id else [target]
            )
        else:
            destinations = await self.config.destinations(tenant, envelope.customer_id)
        configured = {
            channel for channel in channels if await self.config.provider(tenant, channel) is not None
        }
        return plan_channels(
            envelope.event_type,
            channels,
            destinations,
            configured,
            target_destination_id=target_destination_id,
        )

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
            rows.append(
                Undeliverable(PROVIDER_NOT_CONFIGURED, destination).row(
                    envelope, channel, destination.destination_id, 1, now
                )
            )
        return rows

    async def attempt(
        self,
        envelope: EventEnvelope,
        channel: Channel,
        destination_id: str,
        attempt: int,
        *,
        ambiguous_attempts: int = 0,
        display_name: str | None = None,
    ) -> ChannelAttempt | Undeliverable:
        """Load, render and send one claimed attempt; never raises for the provider's failures."""
        tenant = envelope.tenant_id
        destination = await self.config.destination(tenant, destination_id)
        if destination is None or destination.document.end_customer_id != envelope.customer_id:
            return Undeliverable("destination was deleted")
        if not destination.document.active and envelope.event_type != NOTIFICATION_TEST_EVENT:
            return Undeliverable("destination is inactive", destination)
        provider = await self.config.provider(tenant, channel)
        if provider is None:
            return Undeliverable(PROVIDER_NOT_CONFIGURED, destination)
        override = await self.config.template(tenant, envelope.event_type, channel)
        content, note = render_content(envelope, channel, override, display_name)
        delivery = build_delivery(
            envelope, destination, provider, content, attempt=attempt, ambiguous_attempts=ambiguous_attempts
        )
        result = scrubbed(await self.senders.send(delivery), destination)
        notes = [text for text in (note,) if text]
        if provider.document.mode is ProviderMode.TEST:
            notes.insert(0, TEST_MODE_NOTE)
        document = provider.document
        retry = RetryConfig(
            document.max_retry_attempts, document.initial_backoff_seconds, document.backoff_multiplier
        )
        return ChannelAttempt(destination, result, retry, notes)
