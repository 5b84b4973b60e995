"""One channel delivery in, one plain result out: the contract every channel sender keeps.

A sender never raises for a provider's or the network's failure: it answers a `ChannelResult` whose
`outcome` feeds `delivery_log.judge_attempt` like a webhook attempt's does (DELIVERED, RETRYABLE with
an optional `Retry-After`, REJECTED for good, REFUSED by the outbound policy). See docs/channels.md.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from aforo.dispatcher.delivery_log import Outcome
from aforo.shared.channels import ChannelProviderDocument
from aforo.shared.delivery import Channel
from aforo.shared.envelope import EventEnvelope
from aforo.shared.templates import RenderedContent

PROVIDER_REJECTED_CREDENTIALS = "provider_rejected_credentials"


@dataclass(frozen=True, slots=True)
class ChannelDelivery:
    """One attempt at one destination. `address` and `secret` are plaintext here and nowhere else:
    the address as sent (e-mail, E.164 number, routing key), the provider's password or auth token."""

    envelope: EventEnvelope
    content: RenderedContent
    destination_id: str
    address: str
    provider: ChannelProviderDocument
    secret: str | None
    attempt: int
    ambiguous_attempts: int = 0
    """Earlier attempts of this delivery that ended in an ambiguous timeout (SMS only retries once)."""

    @property
    def channel(self) -> Channel:
        return self.provider.channel


@dataclass(frozen=True, slots=True)
class ChannelResult:
    """What one attempt came to. `reference` is the provider's: the SMTP 250 reply, Twilio's message
    `sid`, PagerDuty's `dedup_key`. `response_status` is the HTTP status or the SMTP reply code."""

    outcome: Outcome
    duration_ms: float
    reference: str | None = None
    error: str | None = None
    response_status: int | None = None
    response_body: str | None = None
    retry_after_seconds: float | None = None
    ambiguous: bool = False
    """The request may have reached the provider although no answer came back (SMS: marked in the row)."""

    @property
    def delivered(self) -> bool:
        return self.outcome is Outcome.DELIVERED


class ChannelSender(Protocol):
    """Sends one delivery on one channel; never raises for the provider's or network's failures."""

    channel: Channel

    async def send(self, delivery: ChannelDelivery) -> ChannelResult: ...


class Stopwatch:
    """Milliseconds since it was made: every result reports how long its attempt took."""

    def __init__(self) -> None:
        self._began = time.perf_counter()

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self._began) * 1000


def delivered(clock: Stopwatch, reference: str, status: int | None, body: str | None = None) -> ChannelResult:
    return ChannelResult(
        Outcome.DELIVERED, clock.elapsed_ms(), reference=reference, response_status=status, response_body=body
    )


def retryable(
    clock: Stopwatch,
    error: str,
    status: int | None = None,
    body: str | None = None,
    *,
    retry_after_seconds: float | None = None,
    ambiguous: bool = False,
) -> ChannelResult:
    return ChannelResult(
        Outcome.RETRYABLE,
        clock.elapsed_ms(),
        error=error,
        response_status=status,
        response_body=body,
        retry_after_seconds=retry_after_seconds,
        ambiguous=ambiguous,
    )


def rejected(
    clock: Stopwatch, error: str, status: int | None = None, body: str | None = None
) -> ChannelResult:
    return ChannelResult(
        Outcome.REJECTED, clock.elapsed_ms(), error=error, response_status=status, response_body=body
    )


def refused(clock: Stopwatch, reason: str) -> ChannelResult:
    """The outbound policy refused the provider's address; the text starts like `is_outbound_refusal` expects."""
    text = reason if reason.startswith("refused:") else f"refused: {reason}"
    return ChannelResult(Outcome.REFUSED, clock.elapsed_ms(), error=text)
