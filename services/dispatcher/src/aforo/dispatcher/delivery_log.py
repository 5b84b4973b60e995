"""What one delivery attempt came to, and what follows it. Pure.

`classify_response` turns an HTTP status or a transport error into an outcome; `judge_attempt` turns
the outcome into what happens next (delivered, retry later, failed, disable the endpoint, dead-letter).
The row that records it is `aforo.shared.delivery_log.DeliveryLogRow` (re-exported here), which the
API's audit trail reads too. See docs/dispatch.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from aforo.dispatcher.retry_schedule import RetryConfig, RetryPlan, next_attempt
from aforo.shared.delivery import DeliveryStatus
from aforo.shared.delivery_log import (
    CHANNEL_ONLY_FIELDS,
    RESPONSE_BODY_LIMIT_BYTES,
    UNIQUE_KEY_FIELDS,
    AttemptKey,
    ChannelFacts,
    DeliveryLogRow,
    attempt_row_id,
    delivery_id,
    envelope_text,
    response_body_excerpt,
    row_document,
)

__all__ = [
    "CHANNEL_ONLY_FIELDS",
    "RESPONSE_BODY_LIMIT_BYTES",
    "UNIQUE_KEY_FIELDS",
    "AttemptKey",
    "AttemptVerdict",
    "ChannelFacts",
    "DeadLetterReason",
    "DeliveryLogRow",
    "Outcome",
    "attempt_row_id",
    "classify_response",
    "delivery_id",
    "envelope_text",
    "judge_attempt",
    "response_body_excerpt",
    "row_document",
]

OUTBOUND_REFUSAL_PREFIX: Final = "refused:"
"""How `aforo.dispatcher.outbound` starts an SSRF refusal (after `host: ` for a host name)."""


class Outcome(StrEnum):
    """What one attempt's response (or lack of one) means for the delivery."""

    DELIVERED = "delivered"
    """Any 2xx."""
    RETRYABLE = "retryable"
    """Any other status, a connection error or a timeout: the receiver may recover."""
    GONE = "gone"
    """410: the receiver says the endpoint is gone for good; disable it, do not retry."""
    REFUSED = "refused"
    """The outbound (SSRF) policy refused the address: retrying cannot help."""
    REJECTED = "rejected"
    """A channel provider refused the message for good (SMTP 5yz, a Twilio recipient error, a
    PagerDuty 400, bad credentials, a TLS failure): retrying cannot help."""


class DeadLetterReason(StrEnum):
    """`aforo-dlq-reason` of a webhook delivery sent to `<prefix>dlq.dispatch`."""

    RETRIES_EXHAUSTED = "retries_exhausted"
    ENDPOINT_GONE = "endpoint_gone"
    OUTBOUND_REFUSED = "outbound_refused"
    PROVIDER_REJECTED = "provider_rejected"


def is_outbound_refusal(error: str) -> bool:
    """Whether an error text is the outbound policy's refusal.

    `str(OutboundAddressRefused)` is `refused: ...` for an IP-literal host and `<host>: refused: ...`
    for a name, so both spellings are recognised; aiohttp's own connect errors never look like that.
    """
    if error.startswith(OUTBOUND_REFUSAL_PREFIX):
        return True
    host, separator, rest = error.partition(": ")
    return bool(separator) and " " not in host and rest.startswith(OUTBOUND_REFUSAL_PREFIX)


def classify_response(status: int | None, error: str | None) -> Outcome:
    """The outcome of one attempt from its HTTP status (None if no response) and error text (if any).

    A status wins over an error: a receiver that answered 2xx has the event even if reading its
    body then failed. The adapter passes `str(outbound_refusal_of(exc))` for refusals, so the text
    starts the way `is_outbound_refusal` expects.
    """
    if status is None and error is None:
        raise ValueError("status, error: an attempt has a response status, an error, or both")
    if error is not None and is_outbound_refusal(error):
        return Outcome.REFUSED
    if status is None:
        return Outcome.RETRYABLE
    if 200 <= status <= 299:
        return Outcome.DELIVERED
    if status == 410:
        return Outcome.GONE
    return Outcome.RETRYABLE


@dataclass(frozen=True)
class AttemptVerdict:
    """Everything the adapter does after an attempt: the row status, the retry, the side effects."""

    outcome: Outcome
    status: DeliveryStatus
    retry: RetryPlan | None = None
    disable_endpoint: bool = False
    dead_letter_reason: DeadLetterReason | None = None

    @property
    def next_delay_seconds(self) -> float | None:
        return None if self.retry is None else self.retry.delay_seconds


def judge_attempt(
    attempt: int,
    outcome: Outcome,
    config: RetryConfig,
    retry_after_seconds: float | None,
    max_retry_after_seconds: float,
) -> AttemptVerdict:
    """What follows attempt `attempt` (numbered from 1) of a delivery that came to `outcome`.

    Every FAILED delivery is dead-lettered, with the reason, so operators see all undelivered
    events on one topic; RETRYING ones are parked on a delay topic instead.
    """
    if outcome is Outcome.DELIVERED:
        return AttemptVerdict(outcome, DeliveryStatus.DELIVERED)
    if outcome is Outcome.GONE:
        return AttemptVerdict(
            outcome,
            DeliveryStatus.FAILED,
            disable_endpoint=True,
            dead_letter_reason=DeadLetterReason.ENDPOINT_GONE,
        )
    if outcome is Outcome.REFUSED:
        return AttemptVerdict(
            outcome, DeliveryStatus.FAILED, dead_letter_reason=DeadLetterReason.OUTBOUND_REFUSED
        )
    if outcome is Outcome.REJECTED:
        return AttemptVerdict(
            outcome, DeliveryStatus.FAILED, dead_letter_reason=DeadLetterReason.PROVIDER_REJECTED
        )
    plan = next_attempt(attempt, config, retry_after_seconds, max_retry_after_seconds)
    if plan is None:
        return AttemptVerdict(
            outcome, DeliveryStatus.FAILED, dead_letter_reason=DeadLetterReason.RETRIES_EXHAUSTED
        )
    return AttemptVerdict(outcome, DeliveryStatus.RETRYING, retry=plan)
