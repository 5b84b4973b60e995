"""PAGERDUTY through the Events API v2 (`POST {eventsUrl}`, default the US host; the EU host works
the same), with aiohttp.

`dedup_key` is the eventId, so every retry, replay and crash-recovered attempt of one event collapses
into one alert at PagerDuty: retrying is always safe. 202 → DELIVERED (reference: the `dedup_key`
PagerDuty echoes); 429 → RETRYABLE after at least 30 s (PagerDuty's rate limits reset per minute),
longer when it says so; 5xx and network errors → RETRYABLE; 400 → REJECTED with PagerDuty's message;
other 4xx → REJECTED.
"""

from __future__ import annotations

import json
from typing import Any, Final

from aforo.dispatcher.channels.delivery import (
    PROVIDER_REJECTED_CREDENTIALS,
    ChannelDelivery,
    ChannelResult,
    Stopwatch,
    delivered,
    refused,
    rejected,
    retryable,
)
from aforo.dispatcher.channels.http_provider import HttpFailure, HttpProviderClient, body_text
from aforo.shared.channels import PagerDutyProviderConfig
from aforo.shared.delivery import Channel
from aforo.shared.templates import PagerDutyContent

MIN_RATE_LIMIT_WAIT_SECONDS: Final = 30.0
SOURCE: Final = "aforo-notify"


def trigger_event(delivery: ChannelDelivery) -> dict[str, Any]:
    """The Events API v2 `trigger` of one delivery."""
    content = delivery.content
    if not isinstance(content, PagerDutyContent):
        raise TypeError("content: a PAGERDUTY delivery carries PagerDutyContent")
    envelope = delivery.envelope
    wire = envelope.to_wire()
    return {
        "routing_key": delivery.address,
        "event_action": "trigger",
        "dedup_key": envelope.event_id,
        "payload": {
            "summary": content.summary,
            "source": f"{SOURCE}/{envelope.tenant_id}",
            "severity": content.severity,
            "timestamp": wire["occurredAt"],
            "component": envelope.customer_id,
            "group": wire["category"],
            "class": envelope.event_type,
            "custom_details": content.custom_details,
        },
        "client": SOURCE,
    }


def _message(body: bytes) -> str:
    try:
        parsed: Any = json.loads(body)
    except ValueError:
        return body_text(body)[:200]
    if not isinstance(parsed, dict):
        return body_text(body)[:200]
    errors = parsed.get("errors")
    detail = "; ".join(str(error) for error in errors) if isinstance(errors, list) else ""
    message = str(parsed.get("message") or "")
    return f"{message}: {detail}" if detail else message


class PagerDutySender(HttpProviderClient):
    channel = Channel.PAGERDUTY

    async def send(self, delivery: ChannelDelivery) -> ChannelResult:
        clock = Stopwatch()
        config = delivery.provider.config
        if not isinstance(config, PagerDutyProviderConfig):
            return rejected(clock, "provider_misconfigured: not a PAGERDUTY provider")
        try:
            event = trigger_event(delivery)
        except TypeError as error:
            return rejected(clock, f"message_invalid: {error}")
        answer = await self.post(config.events_url, json=event)
        if isinstance(answer, HttpFailure):
            if answer.refused:
                return refused(clock, answer.error)
            return retryable(clock, answer.error)  # dedup_key makes a repeat harmless
        status, text = answer.status, body_text(answer.body)
        if 200 <= status < 300:
            return delivered(clock, _dedup_key(answer.body) or delivery.envelope.event_id, status, text)
        if status == 429:
            wait = max(MIN_RATE_LIMIT_WAIT_SECONDS, answer.retry_after_seconds or 0.0)
            return retryable(clock, "HTTP 429 rate limited", status, text, retry_after_seconds=wait)
        if status >= 500:
            return retryable(clock, f"HTTP {status} provider error", status, text)
        if status in (401, 403):
            return rejected(clock, f"{PROVIDER_REJECTED_CREDENTIALS}: HTTP {status}", status, text)
        return rejected(
            clock, f"provider_rejected: HTTP {status} {_message(answer.body)}".rstrip(), status, text
        )


def _dedup_key(body: bytes) -> str | None:
    try:
        parsed: Any = json.loads(body)
    except ValueError:
        return None
    key = parsed.get("dedup_key") if isinstance(parsed, dict) else None
    return key if isinstance(key, str) and key else None
