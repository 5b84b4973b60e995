"""The EMAIL, SMS and PAGERDUTY senders against real local servers: aiosmtpd with STARTTLS, implicit
TLS and AUTH; an HTTP server speaking the Twilio Messages contract; one speaking PagerDuty Events v2.

Each test sends through the sender exactly as the dispatcher does and asserts what the server
received and the result the delivery log would record.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from aforo.dispatcher.channels import ChannelSenders
from aforo.dispatcher.channels.delivery import ChannelDelivery, ChannelResult
from aforo.dispatcher.channels.email import EmailSender
from aforo.dispatcher.channels.pagerduty import PagerDutySender
from aforo.dispatcher.channels.sms import SmsSender
from aforo.dispatcher.delivery_log import DeadLetterReason, Outcome, judge_attempt
from aforo.dispatcher.outbound import build_outbound_session, parse_cidr_allowlist
from aforo.dispatcher.retry_schedule import RetryConfig
from aforo.shared.channels import (
    ChannelProviderDocument,
    EmailProviderConfig,
    EmailSecurity,
    PagerDutyProviderConfig,
    ProviderMode,
    SmsProviderConfig,
)
from aforo.shared.delivery import Channel, DeliveryStatus
from aforo.shared.envelope import EventEnvelope
from aforo.shared.metrics import REGISTRY
from aforo.shared.templates import builtin_template, render, template_context
from tests.support.envelopes import make_envelope
from tests.support.provider_http import PagerDutyServer, Step, TwilioServer
from tests.support.smtp_server import SmtpServer
from tests.support.tls import LocalCertificate, make_certificate

# aiosmtpd warns when a server offers AUTH without TLS; the "plain" and implicit-TLS servers do so on
# purpose (the sender must refuse the first; the second is TLS from its first byte).
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")

LOCAL = parse_cidr_allowlist("127.0.0.1/32")
ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "twilio-auth-token-0123456789"
ROUTING_KEY = "R0UT1NGKEY0123456789abcdefABCDEF"
SMTP_USER, SMTP_PASSWORD = "mailer", "correct horse battery staple"
NOW = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def envelope(event_id: str | None = None, payload: dict[str, Any] | None = None) -> EventEnvelope:
    return make_envelope(
        event_id=event_id,
        tenant="t-channels",
        customer="c-42",
        occurred_at=NOW,
        payload=payload or {"invoiceNumber": "INV-1", "amountDue": 12000, "currency": "USD"},
    )


def provider(
    channel: Channel, config: Any, mode: ProviderMode = ProviderMode.LIVE
) -> ChannelProviderDocument:
    return ChannelProviderDocument.model_validate(
        {
            "tenantId": "t-channels",
            "channel": channel,
            "mode": mode,
            channel.value.lower(): config,
            "createdAt": NOW,
            "updatedAt": NOW,
        }
    )


def delivery(
    channel: Channel,
    config: Any,
    address: str,
    *,
    secret: str | None = None,
    event: EventEnvelope | None = None,
    attempt: int = 1,
    ambiguous_attempts: int = 0,
    mode: ProviderMode = ProviderMode.LIVE,
) -> ChannelDelivery:
    event = event or envelope()
    content = render(channel, builtin_template(event.event_type, channel), template_context(event, "Invoice"))
    return ChannelDelivery(
        envelope=event,
        content=content,
        destination_id="cd_0123456789abcdef01234567",
        address=address,
        provider=provider(channel, config, mode),
        secret=secret,
        attempt=attempt,
        ambiguous_attempts=ambiguous_attempts,
    )


def verdict_of(result: ChannelResult, attempt: int = 1) -> Any:
    return judge_attempt(attempt, result.outcome, RetryConfig(), result.retry_after_seconds, 3600.0)


# ----------------------------------------------------------------------------- EMAIL


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> LocalCertificate:
    return make_certificate(Path(tmp_path_factory.mktemp("smtp-tls")))


@pytest.fixture
def smtp(certificate: LocalCertificate) -> Iterator[SmtpServer]:
    server = SmtpServer(certificate, mode="starttls", users={SMTP_USER: SMTP_PASSWORD}).start()
    yield server
    server.stop()


def email_config(
    port: int, security: EmailSecurity = EmailSecurity.STARTTLS, **extra: Any
) -> EmailProviderConfig:
    return EmailProviderConfig.model_validate(
        {
            "host": "localhost" if security is not EmailSecurity.NONE else "127.0.0.1",
            "port": port,
            "security": security,
            "username": SMTP_USER,
            "fromAddress": "billing@notify.acme.test",
            "replyTo": "support@acme.test",
            **extra,
        }
    )


def email_sender(certificate: LocalCertificate, allowlist: Any = LOCAL) -> EmailSender:
    return EmailSender(allowlist, timeout_seconds=10.0, tls_context=certificate.client_context())


async def test_email_over_required_starttls_with_auth_arrives_with_its_headers_and_parts(
    smtp: SmtpServer, certificate: LocalCertificate
) -> None:
    sent = delivery(Channel.EMAIL, email_config(smtp.port), "jane@customer.test", secret=SMTP_PASSWORD)

    result = await email_sender(certificate).send(sent)

    assert result.outcome is Outcome.DELIVERED, result.error
    assert result.reference is not None
    assert result.reference.startswith("250 ")
    (mail,) = await smtp.wait_for(1)
    assert (mail.tls, mail.login, mail.mail_from, mail.recipients) == (
        True,
        SMTP_USER,
        "billing@notify.acme.test",
        ["jane@customer.test"],
    )
    message = mail.message
    assert message["From"] == "billing@notify.acme.test"
    assert message["To"] == "jane@customer.test"
    assert message["Reply-To"] == "support@acme.test"
    assert message["Subject"] == "Your invoice is ready"
    assert message["Message-ID"] == f"<{sent.envelope.event_id}.{sent.destination_id}@notify.acme.test>"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Date"] is not None
    assert message.get_content_type() == "multipart/alternative"
    parts = {part.get_content_type(): part.get_content() for part in message.iter_parts()}
    assert set(parts) == {"text/plain", "text/html"}
    assert "Amount due: 12000 USD" in parts["text/plain"]
    assert "<h1>Your invoice is ready</h1>" in parts["text/html"]


async def test_email_451_is_retried_and_the_retry_carries_the_same_message_id(
    smtp: SmtpServer, certificate: LocalCertificate
) -> None:
    smtp.script(["451 4.7.1 Greylisted, try again later"])
    sender = email_sender(certificate)
    event = envelope()

    first = await sender.send(
        delivery(
            Channel.EMAIL, email_config(smtp.port), "jane@customer.test", secret=SMTP_PASSWORD, event=event
        )
    )
    second = await sender.send(
        delivery(
            Channel.EMAIL,
            email_config(smtp.port),
            "jane@customer.test",
            secret=SMTP_PASSWORD,
            event=event,
            attempt=2,
        )
    )

    assert (first.outcome, first.response_status) == (Outcome.RETRYABLE, 451)
    assert verdict_of(first).status is DeliveryStatus.RETRYING
    assert second.outcome is Outcome.DELIVERED
    offered = smtp.data_messages
    assert len(offered) == 2
    assert offered[0]["Message-ID"] == offered[1]["Message-ID"]
    assert len(await smtp.wait_for(1)) == 1


async def test_email_550_fails_without_retry(smtp: SmtpServer, certificate: LocalCertificate) -> None:
    smtp.script(["550 5.1.1 Mailbox does not exist"])

    result = await email_sender(certificate).send(
        delivery(Channel.EMAIL, email_config(smtp.port), "nobody@customer.test", secret=SMTP_PASSWORD)
    )

    assert (result.outcome, result.response_status) == (Outcome.REJECTED, 550)
    assert "Mailbox does not exist" in (result.error or "")
    verdict = verdict_of(result)
    assert (verdict.status, verdict.retry, verdict.dead_letter_reason) == (
        DeliveryStatus.FAILED,
        None,
        DeadLetterReason.PROVIDER_REJECTED,
    )
    assert smtp.received == []


async def test_email_535_bad_credentials_fail_as_rejected_credentials(
    smtp: SmtpServer, certificate: LocalCertificate
) -> None:
    result = await email_sender(certificate).send(
        delivery(Channel.EMAIL, email_config(smtp.port), "jane@customer.test", secret="wrong password")
    )

    assert (result.outcome, result.response_status) == (Outcome.REJECTED, 535)
    assert (result.error or "").startswith("provider_rejected_credentials")
    assert "wrong password" not in (result.error or "")
    assert smtp.received == []


async def test_email_to_a_server_without_starttls_is_refused_when_starttls_is_configured(
    certificate: LocalCertificate,
) -> None:
    plain = SmtpServer(None, mode="plain", users={SMTP_USER: SMTP_PASSWORD}).start()
    try:
        result = await email_sender(certificate).send(
            delivery(Channel.EMAIL, email_config(plain.port), "jane@customer.test", secret=SMTP_PASSWORD)
        )
        assert result.outcome is Outcome.REJECTED
        assert (result.error or "").startswith("tls_required")
        assert plain.data_messages == []
    finally:
        plain.stop()


async def test_email_over_implicit_tls(certificate: LocalCertificate) -> None:
    server = SmtpServer(certificate, mode="tls", users={SMTP_USER: SMTP_PASSWORD}).start()
    try:
        result = await email_sender(certificate).send(
            delivery(
                Channel.EMAIL,
                email_config(server.port, EmailSecurity.TLS),
                "jane@customer.test",
                secret=SMTP_PASSWORD,
            )
        )
        assert result.outcome is Outcome.DELIVERED, result.error
        (mail,) = await server.wait_for(1)
        assert mail.tls
    finally:
        server.stop()


async def test_email_with_an_untrusted_certificate_fails_as_a_tls_failure(
    smtp: SmtpServer, tmp_path: Path
) -> None:
    stranger = make_certificate(tmp_path / "other")

    result = await email_sender(stranger).send(
        delivery(Channel.EMAIL, email_config(smtp.port), "jane@customer.test", secret=SMTP_PASSWORD)
    )

    assert result.outcome is Outcome.REJECTED
    assert (result.error or "").startswith("tls_failed"), result.error
    assert smtp.data_messages == []


async def test_plaintext_email_only_to_an_allowlisted_address(certificate: LocalCertificate) -> None:
    server = SmtpServer(None, mode="none").start()
    try:
        config = email_config(server.port, EmailSecurity.NONE, username=None)
        allowed = await email_sender(certificate).send(delivery(Channel.EMAIL, config, "jane@customer.test"))
        refused = await email_sender(certificate, allowlist=()).send(
            delivery(Channel.EMAIL, config, "jane@customer.test")
        )
        assert allowed.outcome is Outcome.DELIVERED, allowed.error
        assert refused.outcome is Outcome.REFUSED
        assert verdict_of(refused).dead_letter_reason is DeadLetterReason.OUTBOUND_REFUSED
        assert len(server.data_messages) == 1
    finally:
        server.stop()


async def test_email_to_a_private_address_is_refused_without_an_allowlist(
    smtp: SmtpServer, certificate: LocalCertificate
) -> None:
    result = await email_sender(certificate, allowlist=()).send(
        delivery(Channel.EMAIL, email_config(smtp.port), "jane@customer.test", secret=SMTP_PASSWORD)
    )

    assert result.outcome is Outcome.REFUSED
    assert "loopback" in (result.error or "")
    assert smtp.data_messages == []


async def test_email_to_a_closed_port_is_retryable(certificate: LocalCertificate) -> None:
    from tests.support.stack import free_port

    result = await email_sender(certificate).send(
        delivery(Channel.EMAIL, email_config(free_port()), "jane@customer.test", secret=SMTP_PASSWORD)
    )

    assert result.outcome is Outcome.RETRYABLE
    assert (result.error or "").startswith("connect_error")


# ----------------------------------------------------------------------------- SMS


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    client = build_outbound_session(LOCAL, limit=16, limit_per_host=8, total_timeout_seconds=30)
    yield client
    await client.close()


@pytest_asyncio.fixture
async def twilio() -> AsyncIterator[TwilioServer]:
    server = TwilioServer(ACCOUNT_SID, AUTH_TOKEN)
    await server.start()
    yield server
    await server.stop()


def sms_config(server: TwilioServer, **extra: Any) -> SmsProviderConfig:
    return SmsProviderConfig.model_validate(
        {
            "baseUrl": server.base_url,
            "accountSid": ACCOUNT_SID,
            "authTokenCiphertext": "stored-encrypted",
            "fromNumber": "+15005550006",
            **extra,
        }
    )


async def test_sms_201_is_delivered_with_the_message_sid(
    session: aiohttp.ClientSession, twilio: TwilioServer
) -> None:
    result = await SmsSender(session).send(
        delivery(Channel.SMS, sms_config(twilio), "+447911123123", secret=AUTH_TOKEN)
    )

    assert result.outcome is Outcome.DELIVERED, result.error
    assert result.reference is not None
    assert result.reference.startswith("SM")
    (request,) = twilio.requests
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    assert request.form["To"] == "+447911123123"
    assert request.form["From"] == "+15005550006"
    assert request.form["Body"].startswith("Your invoice is ready. Amount due: 12000 USD.")
    assert "MessagingServiceSid" not in request.form


async def test_sms_through_a_messaging_service(session: aiohttp.ClientSession, twilio: TwilioServer) -> None:
    config = sms_config(twilio, fromNumber=None, messagingServiceSid="MG" + "1" * 32)

    result = await SmsSender(session).send(delivery(Channel.SMS, config, "+447911123123", secret=AUTH_TOKEN))

    assert result.outcome is Outcome.DELIVERED
    assert twilio.requests[0].form["MessagingServiceSid"] == "MG" + "1" * 32
    assert "From" not in twilio.requests[0].form


@pytest.mark.parametrize(
    ("step", "outcome", "error_start", "retry_after"),
    [
        (Step(400, code=21211), Outcome.REJECTED, "recipient_rejected: Twilio 21211", None),
        (Step(400, code=21610), Outcome.REJECTED, "recipient_rejected: Twilio 21610", None),
        (Step(429, retry_after="7"), Outcome.RETRYABLE, "HTTP 429", 7.0),
        (Step(500), Outcome.RETRYABLE, "HTTP 500", None),
        (Step(503, retry_after="12"), Outcome.RETRYABLE, "HTTP 503", 12.0),
    ],
    ids=["21211", "21610", "429", "500", "503"],
)
async def test_sms_failure_classes(
    session: aiohttp.ClientSession,
    twilio: TwilioServer,
    step: Step,
    outcome: Outcome,
    error_start: str,
    retry_after: float | None,
) -> None:
    twilio.plan([step])

    result = await SmsSender(session).send(
        delivery(Channel.SMS, sms_config(twilio), "+447911123123", secret=AUTH_TOKEN)
    )

    assert (result.outcome, result.response_status, result.retry_after_seconds) == (
        outcome,
        step.status,
        retry_after,
    )
    assert (result.error or "").startswith(error_start), result.error
    verdict = verdict_of(result)
    if outcome is Outcome.RETRYABLE:
        assert verdict.retry is not None
        assert verdict.retry.delay_seconds == max(retry_after or 0.0, 2.0)
    else:
        assert (verdict.status, verdict.retry) == (DeliveryStatus.FAILED, None)


async def test_sms_with_a_wrong_auth_token_fails_as_rejected_credentials(
    session: aiohttp.ClientSession, twilio: TwilioServer
) -> None:
    result = await SmsSender(session).send(
        delivery(Channel.SMS, sms_config(twilio), "+447911123123", secret="not-the-token-0000")
    )

    assert (result.outcome, result.response_status) == (Outcome.REJECTED, 401)
    assert result.error == "provider_rejected_credentials: HTTP 401"


async def test_sms_read_timeout_is_ambiguous_and_retried_at_most_once(
    session: aiohttp.ClientSession, twilio: TwilioServer
) -> None:
    twilio.plan([Step(201, hang=3.0), Step(201, hang=3.0)])
    sender = SmsSender(session, read_timeout_seconds=0.5)

    first = await sender.send(delivery(Channel.SMS, sms_config(twilio), "+447911123123", secret=AUTH_TOKEN))
    second = await sender.send(
        delivery(
            Channel.SMS,
            sms_config(twilio),
            "+447911123123",
            secret=AUTH_TOKEN,
            attempt=2,
            ambiguous_attempts=1,
        )
    )

    assert (first.outcome, first.ambiguous) == (Outcome.RETRYABLE, True)
    assert (first.error or "").startswith("ambiguous_timeout")
    assert second.outcome is Outcome.REJECTED
    assert "not sent again" in (second.error or "")
    assert len(twilio.requests) == 2


async def test_sms_connect_error_is_retried_as_certainly_unsent(session: aiohttp.ClientSession) -> None:
    from tests.support.stack import free_port

    config = SmsProviderConfig.model_validate(
        {
            "baseUrl": f"http://127.0.0.1:{free_port()}",
            "accountSid": ACCOUNT_SID,
            "authTokenCiphertext": "x",
            "fromNumber": "+15005550006",
        }
    )
    result = await SmsSender(session).send(
        delivery(Channel.SMS, config, "+447911123123", secret=AUTH_TOKEN, ambiguous_attempts=1)
    )

    assert (result.outcome, result.ambiguous) == (Outcome.RETRYABLE, False)
    assert (result.error or "").startswith("connect_error")


# ----------------------------------------------------------------------------- PAGERDUTY


@pytest_asyncio.fixture
async def pagerduty() -> AsyncIterator[PagerDutyServer]:
    server = PagerDutyServer()
    await server.start()
    yield server
    await server.stop()


def pd_config(server: PagerDutyServer) -> PagerDutyProviderConfig:
    return PagerDutyProviderConfig.model_validate({"eventsUrl": server.events_url})


async def test_pagerduty_202_is_delivered_with_the_event_id_as_dedup_key(
    session: aiohttp.ClientSession, pagerduty: PagerDutyServer
) -> None:
    sent = delivery(Channel.PAGERDUTY, pd_config(pagerduty), ROUTING_KEY)

    result = await PagerDutySender(session).send(sent)

    assert (result.outcome, result.response_status, result.reference) == (
        Outcome.DELIVERED,
        202,
        sent.envelope.event_id,
    )
    (request,) = pagerduty.requests
    event = request.json
    assert (event["routing_key"], event["event_action"], event["dedup_key"]) == (
        ROUTING_KEY,
        "trigger",
        sent.envelope.event_id,
    )
    assert event["payload"]["severity"] == "info"
    assert event["payload"]["summary"] == "Your invoice is ready (customer c-42): Amount due: 12000 USD"
    assert event["payload"]["custom_details"] == sent.envelope.payload


async def test_pagerduty_dedup_key_is_stable_across_retries_and_a_replay(
    session: aiohttp.ClientSession, pagerduty: PagerDutyServer
) -> None:
    pagerduty.plan([Step(500)])
    sender, event = PagerDutySender(session), envelope()

    first = await sender.send(delivery(Channel.PAGERDUTY, pd_config(pagerduty), ROUTING_KEY, event=event))
    retry = await sender.send(
        delivery(Channel.PAGERDUTY, pd_config(pagerduty), ROUTING_KEY, event=event, attempt=2)
    )
    replay = await sender.send(
        delivery(Channel.PAGERDUTY, pd_config(pagerduty), ROUTING_KEY, event=event, attempt=3)
    )

    assert [first.outcome, retry.outcome, replay.outcome] == [
        Outcome.RETRYABLE,
        Outcome.DELIVERED,
        Outcome.DELIVERED,
    ]
    assert {request.json["dedup_key"] for request in pagerduty.requests} == {event.event_id}
    assert len(pagerduty.requests) == 3


@pytest.mark.parametrize(("retry_after", "expected"), [(None, 30.0), ("5", 30.0), ("120", 120.0)])
async def test_pagerduty_429_waits_at_least_30_seconds(
    session: aiohttp.ClientSession, pagerduty: PagerDutyServer, retry_after: str | None, expected: float
) -> None:
    pagerduty.plan([Step(429, retry_after=retry_after)])

    result = await PagerDutySender(session).send(
        delivery(Channel.PAGERDUTY, pd_config(pagerduty), ROUTING_KEY)
    )

    assert (result.outcome, result.retry_after_seconds) == (Outcome.RETRYABLE, expected)
    verdict = verdict_of(result)
    assert verdict.retry is not None
    assert verdict.retry.delay_seconds == expected


async def test_pagerduty_400_fails_with_pagerdutys_message(
    session: aiohttp.ClientSession, pagerduty: PagerDutyServer
) -> None:
    result = await PagerDutySender(session).send(
        delivery(Channel.PAGERDUTY, pd_config(pagerduty), "too-short-routing-key")
    )

    assert (result.outcome, result.response_status) == (Outcome.REJECTED, 400)
    assert "Event object is invalid" in (result.error or "")
    assert "routing_key" in (result.error or "")


async def test_pagerduty_to_a_private_address_is_refused_without_an_allowlist(
    pagerduty: PagerDutyServer,
) -> None:
    closed = build_outbound_session((), limit=4, limit_per_host=4, total_timeout_seconds=10)
    try:
        result = await PagerDutySender(closed).send(
            delivery(Channel.PAGERDUTY, pd_config(pagerduty), ROUTING_KEY)
        )
    finally:
        await closed.close()

    assert result.outcome is Outcome.REFUSED
    assert pagerduty.requests == []


# ----------------------------------------------------------------------------- test mode, metrics


async def test_test_mode_renders_and_sends_nothing_and_counts_per_channel(
    session: aiohttp.ClientSession, pagerduty: PagerDutyServer
) -> None:
    senders = ChannelSenders([PagerDutySender(session)])
    labels = {"channel": "PAGERDUTY", "outcome": "delivered"}
    before = REGISTRY.get_sample_value("aforo_dispatcher_channel_attempts_total", labels) or 0.0

    result = await senders.send(
        delivery(Channel.PAGERDUTY, pd_config(pagerduty), ROUTING_KEY, mode=ProviderMode.TEST)
    )

    assert (result.outcome, result.reference) == (Outcome.DELIVERED, "test mode")
    assert pagerduty.requests == []
    assert REGISTRY.get_sample_value("aforo_dispatcher_channel_attempts_total", labels) == before + 1
