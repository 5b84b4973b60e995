"""SMS through the Twilio Messages API (which most SMS gateways imitate), with aiohttp.

`POST {baseUrl}/2010-04-01/Accounts/{accountSid}/Messages.json`, form fields `To`, `From` (or
`MessagingServiceSid`) and `Body`, HTTP Basic auth (account SID, auth token). 201 with the message's
`sid` is DELIVERED (accepted by the provider).

SMS has no provider idempotency key, so a retry is only safe when the request certainly did not
send: a connect error, 429 (its `Retry-After` honoured) or 5xx. A read timeout after the request was
written is ambiguous: it is retried at most once (marked in the result), and a second one fails the
delivery rather than risk a third text. 401/404 → REJECTED `provider_rejected_credentials`; a 400
with a recipient error code (21211, 21610, 21614, 21612, 21408, 21606) or any other 4xx → REJECTED
naming Twilio's code.
"""

from __future__ import annotations

import json
from typing import Any, Final
from urllib.parse import quote

import aiohttp

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
from aforo.shared.channels import SmsProviderConfig
from aforo.shared.delivery import Channel
from aforo.shared.templates import SmsContent

RECIPIENT_ERROR_CODES: Final = frozenset({21211, 21610, 21614, 21612, 21408, 21606})
"""Twilio's codes for a recipient that cannot be texted (invalid, opted out, not mobile, region)."""
MAX_AMBIGUOUS_RETRIES: Final = 1


def messages_url(config: SmsProviderConfig) -> str:
    return f"{config.base_url.rstrip('/')}/2010-04-01/Accounts/{quote(config.account_sid, safe='')}/Messages.json"


def message_form(delivery: ChannelDelivery, config: SmsProviderConfig) -> dict[str, str]:
    """The form of one message: `MessagingServiceSid` when configured (the service picks the sender)."""
    content = delivery.content
    if not isinstance(content, SmsContent):
        raise TypeError("content: an SMS delivery carries SmsContent")
    form = {"To": delivery.address, "Body": content.body}
    if config.messaging_service_sid:
        form["MessagingServiceSid"] = config.messaging_service_sid
    elif config.from_number:
        form["From"] = config.from_number
    return form


def _twilio_error(body: bytes) -> tuple[int | None, str]:
    """Twilio's `{"code", "message", "more_info", "status"}` error body, or what can be read of it."""
    try:
        parsed: Any = json.loads(body)
    except ValueError:
        return None, body_text(body)[:200]
    if not isinstance(parsed, dict):
        return None, body_text(body)[:200]
    code = parsed.get("code")
    return (code if isinstance(code, int) else None), str(parsed.get("message") or "")


class SmsSender(HttpProviderClient):
    channel = Channel.SMS

    async def send(self, delivery: ChannelDelivery) -> ChannelResult:
        clock = Stopwatch()
        config = delivery.provider.config
        if not isinstance(config, SmsProviderConfig) or not delivery.secret:
            return rejected(clock, "provider_misconfigured: an SMS provider needs its account and auth token")
        try:
            form = message_form(delivery, config)
        except TypeError as error:
            return rejected(clock, f"message_invalid: {error}")
        answer = await self.post(
            messages_url(config),
            form=form,
            headers={"Authorization": aiohttp.encode_basic_auth(config.account_sid, delivery.secret)},
        )
        if isinstance(answer, HttpFailure):
            if answer.refused:
                return refused(clock, answer.error)
            if not answer.sent:
                return retryable(clock, answer.error)
            if delivery.ambiguous_attempts >= MAX_AMBIGUOUS_RETRIES:
                return rejected(
                    clock,
                    f"ambiguous_timeout: {answer.error}; the message may have been sent, and an earlier "
                    "attempt was already ambiguous, so it is not sent again",
                )
            return retryable(
                clock,
                f"ambiguous_timeout: {answer.error}; the message may have been sent (retried once)",
                ambiguous=True,
            )
        status, text = answer.status, body_text(answer.body)
        if status == 201 or 200 <= status < 300:
            sid = _sid(answer.body)
            if sid is None:
                return delivered(clock, f"HTTP {status}", status, text)
            return delivered(clock, sid, status, text)
        if status == 429:
            return retryable(
                clock,
                "HTTP 429 too many requests",
                status,
                text,
                retry_after_seconds=answer.retry_after_seconds,
            )
        if status >= 500:
            return retryable(
                clock,
                f"HTTP {status} provider error",
                status,
                text,
                retry_after_seconds=answer.retry_after_seconds,
            )
        if status in (401, 404):
            return rejected(clock, f"{PROVIDER_REJECTED_CREDENTIALS}: HTTP {status}", status, text)
        code, message = _twilio_error(answer.body)
        if code in RECIPIENT_ERROR_CODES:
            return rejected(clock, f"recipient_rejected: Twilio {code}: {message}", status, text)
        named = f"Twilio {code}: {message}" if code is not None else message
        return rejected(clock, f"provider_rejected: HTTP {status} {named}".rstrip(), status, text)


def _sid(body: bytes) -> str | None:
    try:
        parsed: Any = json.loads(body)
    except ValueError:
        return None
    sid = parsed.get("sid") if isinstance(parsed, dict) else None
    return sid if isinstance(sid, str) and sid else None
