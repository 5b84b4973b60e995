"""EMAIL, SMS, PAGERDUTY and WEBHOOK end to end, every service process real: configuration through
the API, one producer record through the bridge, the dispatcher sending to a real SMTP server
(STARTTLS + AUTH), a Twilio-contract server, a PagerDuty-contract server and a webhook receiver, and
the audit trail back through the API."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from aforo.shared.envelope import EventEnvelope
from tests.support.api_harness import ApiUnderTest, start_api
from tests.support.kafka import create_topics, produce
from tests.support.processes import ServiceProcess
from tests.support.provider_http import PagerDutyServer, Step, TwilioServer
from tests.support.receiver import Receiver
from tests.support.smtp_server import SmtpServer
from tests.support.stack import LocalStack, service_env
from tests.support.tls import LocalCertificate, make_certificate

SMTP_USER, SMTP_PASSWORD = "mailer", f"smtp-{uuid.uuid4().hex}"
EHLO_HOSTNAME = "dispatcher-7.mail.example.test"  # AFORO_DISPATCHER_SMTP_EHLO_HOSTNAME, given in EHLO
ACCOUNT_SID, AUTH_TOKEN = "AC" + "2" * 32, f"twilio-{uuid.uuid4().hex}"
ROUTING_KEY = "E2EROUTINGKEY" + uuid.uuid4().hex[:19].upper()
CONFIG_BOUND_SECONDS = 2.0
ALL_CHANNELS = ["EMAIL", "SMS", "PAGERDUTY", "WEBHOOK"]


@dataclass
class ChannelStack:
    api: ApiUnderTest
    smtp: SmtpServer
    twilio: TwilioServer
    pagerduty: PagerDutyServer
    receiver: Receiver
    source_topic: str
    processes: dict[str, ServiceProcess]

    async def configure_providers(self, **sms: Any) -> None:
        replies = [
            await self.api.call(
                "PUT",
                "/api/v1/admin/channel-providers/EMAIL",
                json={
                    "host": "localhost",
                    "port": self.smtp.port,
                    "security": "starttls",
                    "username": SMTP_USER,
                    "password": SMTP_PASSWORD,
                    "fromAddress": "billing@notify.example.com",
                    "initialBackoffSeconds": 1,
                },
            ),
            await self.api.call(
                "PUT",
                "/api/v1/admin/channel-providers/SMS",
                json={
                    "baseUrl": self.twilio.base_url,
                    "accountSid": ACCOUNT_SID,
                    "authToken": AUTH_TOKEN,
                    "fromNumber": "+14155552671",
                    "initialBackoffSeconds": 1,
                    **sms,
                },
            ),
            await self.api.call(
                "PUT",
                "/api/v1/admin/channel-providers/PAGERDUTY",
                json={"eventsUrl": self.pagerduty.events_url, "initialBackoffSeconds": 1},
            ),
        ]
        assert [reply.status for reply in replies] == [201, 201, 201], [reply.body for reply in replies]

    async def destination(self, customer: str, channel: str, address: str) -> str:
        reply = await self.api.call(
            "POST",
            "/api/v1/contact-destinations",
            json={"endCustomerId": customer, "channel": channel, "address": address},
        )
        assert reply.status == 201, reply.body
        destination_id: str = reply.json()["destinationId"]
        return destination_id

    async def choose(self, customer: str, channels: list[str], event_type: str = "INVOICE_GENERATED") -> None:
        reply = await self.api.portal(
            "PUT",
            "/api/v1/notification-preferences",
            customer=customer,
            json={"eventType": event_type, "enabled": True, "channels": channels},
        )
        assert reply.status == 200, reply.body

    async def invoice(self, customer: str, event_id: str, amount: int = 12000) -> None:
        record = {
            "tenantId": "t1",
            "customerId": customer,
            "eventId": event_id,
            "invoiceNumber": f"INV-{event_id}",
            "currency": "USD",
            "amountDue": amount,
        }
        await produce(self.api.stack.kafka_bootstrap, self.source_topic, [json.dumps(record).encode()])

    async def audit(
        self, customer: str, count: int, timeout: float = 60.0, **query: str
    ) -> list[dict[str, Any]]:
        """The customer's audit trail once it holds at least `count` rows matching `query`."""
        deadline = time.monotonic() + timeout
        items: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            reply = await self.api.call(
                "GET",
                "/internal/v1/delivery-logs/by-customer",
                params={"endCustomerId": customer, "limit": "200", **query},
            )
            items = reply.json()["items"]
            if len(items) >= count:
                return items
            await asyncio.sleep(0.2)
        everything = await self.api.call(
            "GET",
            "/internal/v1/delivery-logs/by-customer",
            params={"endCustomerId": customer, "limit": "200"},
        )
        raise AssertionError(f"expected {count} audit rows for {customer} {query}, got {everything.json()}")


@asynccontextmanager
async def channel_stack(
    local_stack: LocalStack, log_dir: Path, certificate: LocalCertificate, **dispatcher_env: str
) -> AsyncIterator[ChannelStack]:
    smtp = SmtpServer(certificate, mode="starttls", users={SMTP_USER: SMTP_PASSWORD}).start()
    twilio = TwilioServer(ACCOUNT_SID, AUTH_TOKEN)
    pagerduty = PagerDutyServer()
    await twilio.start()
    await pagerduty.start()
    receiver = await Receiver(log_dir).start()
    processes: dict[str, ServiceProcess] = {}
    try:
        async with start_api(local_stack, log_dir) as api:
            env = service_env(
                local_stack,
                api.prefix,
                api.database,
                AFORO_SECRETS_ENCRYPTION_KEYS=api.encryption_key,
                AFORO_BRIDGE_SOURCE_TOPIC_PREFIX=api.prefix,
                AFORO_BRIDGE_METADATA_MAX_AGE_MS="1000",
                AFORO_DISPATCHER_SMTP_CA_FILE=str(certificate.cert_path),
                AFORO_DISPATCHER_SMTP_TIMEOUT_SECONDS="5",
                AFORO_DISPATCHER_SMTP_EHLO_HOSTNAME=EHLO_HOSTNAME,
                **dispatcher_env,
            )
            source_topic = f"{api.prefix}billing.invoice.finalized"
            await create_topics(local_stack.kafka_bootstrap, [source_topic])
            processes = {
                module: ServiceProcess(module, env_prefix, env, log_dir).start()
                for module, env_prefix in (
                    ("aforo.bridge", "AFORO_BRIDGE_"),
                    ("aforo.dispatcher", "AFORO_DISPATCHER_"),
                )
            }
            await asyncio.gather(*(process.wait_ready(timeout=90) for process in processes.values()))
            yield ChannelStack(api, smtp, twilio, pagerduty, receiver, source_topic, processes)
    finally:
        codes = {name: await asyncio.to_thread(process.terminate, 30) for name, process in processes.items()}
        receiver.stop()
        await twilio.stop()
        await pagerduty.stop()
        smtp.stop()
    assert all(code in (0, -9) for code in codes.values()), codes


async def test_one_invoice_reaches_email_sms_pagerduty_and_webhook_and_the_audit_trail_shows_four_delivered_rows(
    local_stack: LocalStack, service_log_dir: Path, tmp_path: Path
) -> None:
    certificate = make_certificate(tmp_path / "smtp")
    async with channel_stack(local_stack, service_log_dir, certificate) as stack:
        await stack.configure_providers()
        email_id = await stack.destination("c1", "EMAIL", "Jane@Customer.example.com")
        sms_id = await stack.destination("c1", "SMS", "+44 7911 123123")
        pager_id = await stack.destination("c1", "PAGERDUTY", ROUTING_KEY)
        await stack.destination("c2", "EMAIL", "bob@customer.example.com")
        hook = await stack.api.call(
            "POST",
            "/api/v1/webhook-endpoints",
            json={
                "endCustomerId": "c1",
                "url": stack.receiver.hook_url("channels"),
                "events": ["*"],
                "secret": "whsec_channels_e2e_secret",
            },
        )
        assert hook.status == 201
        await stack.choose("c1", ALL_CHANNELS)
        await stack.choose("c2", ["EMAIL", "SMS"])
        await asyncio.sleep(CONFIG_BOUND_SECONDS)

        await stack.invoice("c1", "inv-ch-1")
        await stack.invoice("c2", "inv-ch-2")

        mails = await stack.smtp.wait_for(2, timeout=60)
        (texts,) = await stack.twilio.wait_for(1, timeout=60)
        (incident,) = await stack.pagerduty.wait_for(1, timeout=60)
        (webhook,) = await stack.receiver.wait_for("channels", 1, timeout=60)

        # E-mail, as the SMTP server received it: over TLS, authenticated, headers and MIME parts.
        (mail,) = [mail for mail in mails if mail.recipients == ["Jane@customer.example.com"]]
        message = mail.message
        assert (mail.tls, mail.login, mail.ehlo) == (True, SMTP_USER, EHLO_HOSTNAME)
        assert (message["From"], message["To"], message["Subject"]) == (
            "billing@notify.example.com",
            "Jane@customer.example.com",
            "Your invoice is ready",
        )
        assert message["Message-ID"] == f"<inv-ch-1.{email_id}@notify.example.com>"
        assert message["Date"] is not None
        assert message["Auto-Submitted"] == "auto-generated"
        parts = {part.get_content_type(): part.get_content() for part in message.iter_parts()}
        assert "Amount due: 12000 USD" in parts["text/plain"]
        assert "INV-inv-ch-1" in parts["text/html"]
        # SMS and PagerDuty, as their servers received them.
        assert (texts.form["To"], texts.form["From"]) == ("+447911123123", "+14155552671")
        assert texts.form["Body"].startswith("Your invoice is ready. Amount due: 12000 USD.")
        assert (incident.json["routing_key"], incident.json["dedup_key"]) == (ROUTING_KEY, "inv-ch-1")
        assert incident.json["payload"]["custom_details"]["invoiceNumber"] == "INV-inv-ch-1"
        assert json.loads(webhook["body"])["eventId"] == "inv-ch-1"

        # The audit trail: four DELIVERED rows for c1, one per channel, addresses masked.
        rows = await stack.audit("c1", 4, status="DELIVERED")
        by_channel = {row["channel"]: row for row in rows}
        assert sorted(by_channel) == sorted(ALL_CHANNELS)
        assert len(rows) == 4
        assert (by_channel["EMAIL"]["destinationId"], by_channel["EMAIL"]["maskedAddress"]) == (
            email_id,
            "J***@customer.example.com",
        )
        assert by_channel["EMAIL"]["providerReference"].startswith("250 ")
        assert (by_channel["SMS"]["destinationId"], by_channel["SMS"]["maskedAddress"]) == (
            sms_id,
            "+4479*****123",
        )
        assert by_channel["SMS"]["providerReference"].startswith("SM")
        assert (by_channel["PAGERDUTY"]["destinationId"], by_channel["PAGERDUTY"]["providerReference"]) == (
            pager_id,
            "inv-ch-1",
        )
        assert by_channel["PAGERDUTY"]["maskedAddress"] == f"****{ROUTING_KEY[-4:]}"
        trail = json.dumps(rows)
        for address in ("+447911123123", "Jane@customer.example.com", ROUTING_KEY):
            assert address not in trail  # Twilio's 201 echoes the number: the row keeps it masked
        # c2 has no SMS destination: SKIPPED no_destination beside its delivered e-mail.
        c2_rows = await stack.audit("c2", 3)
        assert sorted((row["channel"], row["status"], row["skipReason"]) for row in c2_rows) == [
            ("EMAIL", "DELIVERED", None),
            ("SMS", "SKIPPED", "no_destination"),
            ("WEBHOOK", "SKIPPED", "channel_not_chosen"),
        ]

        # A mandatory event for a customer reachable nowhere is FAILED, not dropped; with an SMS
        # destination it goes out whatever the preferences say.
        await stack.destination("c4", "SMS", "+447911123124")
        await stack.choose("c4", ["SMS"], "PAYMENT_OVERDUE")
        await asyncio.sleep(CONFIG_BOUND_SECONDS)
        for customer in ("c3", "c4"):
            overdue = EventEnvelope(
                event_id=f"overdue-{customer}",
                event_type="PAYMENT_OVERDUE",
                category="Billing",
                severity="CRITICAL",
                tenant_id="t1",
                customer_id=customer,
                occurred_at=datetime.now(UTC),
                payload={"amountDue": 500, "currency": "USD"},
            )
            await produce(
                stack.api.stack.kafka_bootstrap,
                stack.api.topics.system_events,
                [overdue.to_json_bytes()],
                key=overdue.partition_key,
            )
        (unreached,) = await stack.audit("c3", 1)
        assert (unreached["channel"], unreached["status"]) == ("WEBHOOK", "FAILED")
        assert unreached["error"].startswith("no_destination")
        c4_rows = await stack.audit("c4", 1, status="DELIVERED")
        assert [row["channel"] for row in c4_rows] == ["SMS"]
        assert await stack.audit("c4", 0, status="FAILED") == []  # it reached someone: no FAILED row

        # A CUSTOM event gets the generic template, headed by its definition's display name.
        defined = await stack.api.call(
            "POST",
            "/api/v1/admin/event-definitions",
            json={
                "eventType": "QUOTA_WARNING",
                "displayName": "Quota warning",
                "category": "Usage",
                "severity": "WARNING",
                "defaultChannels": ["EMAIL"],
            },
        )
        assert defined.status == 201, defined.body
        await asyncio.sleep(CONFIG_BOUND_SECONDS)
        emitted = await stack.api.call(
            "POST",
            "/api/v1/notification-event-definitions/QUOTA_WARNING/emit",
            json={"customerId": "c1", "payload": {"quota": "api-calls"}},
        )
        assert emitted.status == 202
        mails = await stack.smtp.wait_for(3, timeout=60)
        (custom,) = [mail.message for mail in mails if mail.message["X-Aforo-Event-Type"] == "QUOTA_WARNING"]
        assert custom["Subject"] == "Quota warning"

        # A destination test sends notification.test through the real provider.
        probe = await stack.api.call("POST", f"/api/v1/contact-destinations/{email_id}/test")
        assert probe.status == 202
        mails = await stack.smtp.wait_for(4, timeout=60)
        assert any(mail.message["X-Aforo-Event-Type"] == "notification.test" for mail in mails)

        # Per-channel metrics on the dispatcher's /metrics.
        async with aiohttp.ClientSession() as session:
            dispatcher_url = stack.processes["aforo.dispatcher"].url
            async with session.get(f"{dispatcher_url}/metrics") as response:
                metrics = await response.text()
        for channel in ("EMAIL", "SMS", "PAGERDUTY"):
            assert (
                f'aforo_dispatcher_channel_attempts_total{{channel="{channel}",outcome="delivered"}}'
                in metrics
            )
            assert f'aforo_dispatcher_channel_attempt_seconds_count{{channel="{channel}"}}' in metrics

        # Nothing secret reached the logs.
        for process in stack.processes.values():
            text = process.log_text()
            for secret in (SMTP_PASSWORD, AUTH_TOKEN, ROUTING_KEY, "Jane@customer.example.com"):
                assert secret not in text


async def test_provider_failures_retry_through_the_delay_topics_with_stable_idempotency_keys(
    local_stack: LocalStack, service_log_dir: Path, tmp_path: Path
) -> None:
    certificate = make_certificate(tmp_path / "smtp")
    async with channel_stack(local_stack, service_log_dir, certificate) as stack:
        await stack.configure_providers()
        await stack.destination("c1", "EMAIL", "jane@customer.example.com")
        await stack.destination("c1", "SMS", "+447911123123")
        await stack.destination("c1", "PAGERDUTY", ROUTING_KEY)
        await stack.choose("c1", ["EMAIL", "SMS", "PAGERDUTY"])
        stack.smtp.script(["451 4.7.1 Greylisted, try again later"])
        stack.twilio.plan([Step(500)])
        stack.pagerduty.plan([Step(500)])
        await asyncio.sleep(CONFIG_BOUND_SECONDS)

        await stack.invoice("c1", "inv-retry-1")

        rows = await stack.audit("c1", 3, timeout=90, status="DELIVERED")
        assert sorted((row["channel"], row["attempt"]) for row in rows) == [
            ("EMAIL", 2),
            ("PAGERDUTY", 2),
            ("SMS", 2),
        ]
        retrying = await stack.audit("c1", 3, status="RETRYING")
        assert sorted(row["responseStatus"] for row in retrying) == [451, 500, 500]
        offered = stack.smtp.data_messages
        assert len(offered) == 2
        assert offered[0]["Message-ID"] == offered[1]["Message-ID"]
        assert {request.json["dedup_key"] for request in stack.pagerduty.requests} == {"inv-retry-1"}
        assert len(stack.twilio.requests) == 2


async def test_failed_channel_deliveries_are_replayed_and_recovered_with_the_same_keys(
    local_stack: LocalStack, service_log_dir: Path, tmp_path: Path
) -> None:
    certificate = make_certificate(tmp_path / "smtp")
    async with channel_stack(local_stack, service_log_dir, certificate) as stack:
        await stack.configure_providers()
        sms_id = await stack.destination("c1", "SMS", "+447911123123")
        await stack.destination("c1", "PAGERDUTY", ROUTING_KEY)
        await stack.choose("c1", ["SMS", "PAGERDUTY"])
        stack.twilio.plan([Step(400, code=21211)])
        stack.pagerduty.plan([Step(400)])
        await asyncio.sleep(CONFIG_BOUND_SECONDS)
        await stack.invoice("c1", "inv-replay-1")

        failed = await stack.audit("c1", 2, status="FAILED")
        by_channel = {row["channel"]: row for row in failed}
        assert by_channel["SMS"]["error"].startswith("recipient_rejected: Twilio 21211")
        assert "Event object is invalid" in by_channel["PAGERDUTY"]["error"]

        replayed = await stack.api.call(
            "POST", f"/api/v1/deliveries/{by_channel['PAGERDUTY']['deliveryId']}/replay"
        )
        recovered = await stack.api.call(
            "POST", f"/api/v1/contact-destinations/{sms_id}/recover", params={"since": "2026-01-01T00:00:00Z"}
        )
        assert (replayed.status, recovered.status, recovered.json()) == (202, 202, {"requested": 1})

        delivered = await stack.audit("c1", 2, status="DELIVERED")
        assert sorted((row["channel"], row["attempt"]) for row in delivered) == [("PAGERDUTY", 2), ("SMS", 2)]
        assert [request.json["dedup_key"] for request in stack.pagerduty.requests] == ["inv-replay-1"] * 2
        assert [request.form["To"] for request in stack.twilio.requests] == ["+447911123123"] * 2
