"""EMAIL, SMS and PAGERDUTY senders behind one interface keyed by channel (docs/channels.md).

`ChannelSenders.send` is what the dispatcher calls per attempt: it picks the channel's sender,
honours the provider's `mode: test` (render and log, send nothing) and records the per-channel
metrics. The senders themselves are thin adapters over SMTP and two HTTP contracts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from aforo.dispatcher.channels.delivery import ChannelDelivery, ChannelResult, ChannelSender, Stopwatch
from aforo.dispatcher.delivery_log import Outcome
from aforo.dispatcher.metrics import CHANNEL_ATTEMPT_SECONDS, CHANNEL_ATTEMPTS
from aforo.shared.channels import ProviderMode
from aforo.shared.delivery import Channel

TEST_MODE_REFERENCE = "test mode"

__all__ = ["ChannelDelivery", "ChannelResult", "ChannelSender", "ChannelSenders"]


class ChannelSenders:
    """The sender of each provider channel."""

    def __init__(self, senders: Iterable[ChannelSender]) -> None:
        self._senders: Mapping[Channel, ChannelSender] = {sender.channel: sender for sender in senders}

    def handles(self, channel: Channel) -> bool:
        return channel in self._senders

    async def send(self, delivery: ChannelDelivery) -> ChannelResult:
        channel = delivery.channel
        if delivery.provider.mode is ProviderMode.TEST:
            clock = Stopwatch()
            result = ChannelResult(Outcome.DELIVERED, clock.elapsed_ms(), reference=TEST_MODE_REFERENCE)
        else:
            sender = self._senders.get(channel)
            if sender is None:
                raise LookupError(f"channel: no sender for {channel.value}")
            result = await sender.send(delivery)
        CHANNEL_ATTEMPTS.labels(channel.value, result.outcome.value).inc()
        CHANNEL_ATTEMPT_SECONDS.labels(channel.value).observe(result.duration_ms / 1000)
        return result
