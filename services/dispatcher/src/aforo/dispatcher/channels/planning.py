"""Which EMAIL, SMS and PAGERDUTY deliveries an event makes, once preferences chose its channels. Pure.

One delivery per (event, channel, destination) for every active destination subscribed to the event.
A chosen channel with no such destination is SKIPPED `no_destination`; one whose tenant has no
provider is FAILED `provider_not_configured` (no retries: configuration, not the network, is
missing). A mandatory event must reach someone: when it reaches no destination on any channel
(webhooks included, which the caller counts), its `no_destination` rows are FAILED instead.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Final

from aforo.dispatcher.channels.configuration import DestinationRecord
from aforo.shared.channels import PROVIDER_CHANNELS
from aforo.shared.delivery import Channel

PROVIDER_NOT_CONFIGURED: Final = "provider_not_configured"
NO_DESTINATION: Final = "no_destination"
MANDATORY_UNREACHED: Final = "no_destination: a mandatory event reached no destination on any channel"


@dataclass(frozen=True)
class ChannelPlan:
    deliver: list[tuple[Channel, DestinationRecord]] = field(default_factory=list)
    no_destination: list[Channel] = field(default_factory=list)
    not_configured: list[tuple[Channel, DestinationRecord]] = field(default_factory=list)
    """Destinations of a channel whose tenant has no provider: each one FAILED, not retried."""


def plan_channels(
    event_type: str,
    chosen: Iterable[Channel],
    destinations: Iterable[DestinationRecord],
    configured: Collection[Channel],
    *,
    target_destination_id: str | None = None,
) -> ChannelPlan:
    """The deliveries of the chosen provider channels, in channel then destination order.

    `target_destination_id` (a `notification.test` or a replay) aims at that one destination,
    active or not, whatever its event filter.
    """
    plan = ChannelPlan()
    listed = list(destinations)
    for channel in sorted(set(chosen) & PROVIDER_CHANNELS):
        if target_destination_id is not None:
            matching = [
                d
                for d in listed
                if d.destination_id == target_destination_id and d.document.channel is channel
            ]
        else:
            matching = [
                d
                for d in listed
                if d.document.channel is channel
                and d.document.active
                and d.document.subscribed_to(event_type)
            ]
        if not matching:
            plan.no_destination.append(channel)
        elif channel not in configured:
            plan.not_configured.extend((channel, destination) for destination in matching)
        else:
            plan.deliver.extend((channel, destination) for destination in matching)
    return plan


def mandatory_unreached(mandatory: bool, channel_deliveries: int, other_deliveries: int) -> bool:
    """Whether a mandatory event's `no_destination` rows must be FAILED: it reached nobody at all."""
    return mandatory and channel_deliveries == 0 and other_deliveries == 0
