"""Channel configuration on the real API process: providers (write-only secrets), contact destinations
(validated, masked, 409 on a duplicate address, routing keys never returned) and template overrides
(refused with 422 naming the template field and the undefined name), each write published as a config
change without ciphertexts."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio

from aforo.shared.dispatch_requests import DispatchRequest
from aforo.shared.serde import loads_json
from tests.support.api_harness import ApiUnderTest, start_api
from tests.support.stack import LocalStack

PROVIDERS = "/api/v1/admin/channel-providers"
DESTINATIONS = "/api/v1/contact-destinations"
TEMPLATES = "/api/v1/admin/templates"
SMTP_PASSWORD = f"smtp-NEVER-SHOWN-{uuid.uuid4().hex}"
AUTH_TOKEN = f"twilio-NEVER-SHOWN-{uuid.uuid4().hex}"
ROUTING_KEY = "PDNEVERSHOWN" + uuid.uuid4().hex[:20].upper()
EMAIL_PROVIDER = {
    "host": "smtp.example.com",
    "port": 587,
    "security": "starttls",
    "username": "mailer",
    "password": SMTP_PASSWORD,
    "fromAddress": "billing@notify.example.com",
}
SMS_PROVIDER = {
    "baseUrl": "https://api.twilio.com",
    "accountSid": "AC" + "1" * 32,
    "authToken": AUTH_TOKEN,
    "fromNumber": "+14155552671",
}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api(local_stack: LocalStack, service_log_dir: Path) -> AsyncIterator[ApiUnderTest]:
    async with start_api(
        local_stack,
        service_log_dir,
        {"AFORO_LOG_LEVEL": "DEBUG", "AFORO_API_OUTBOUND_ALLOWLIST": "127.0.0.1/32"},
    ) as running:
        yield running


def tenant() -> str:
    return f"t-ch-{uuid.uuid4().hex[:8]}"


async def test_provider_secrets_are_write_only_and_kept_when_left_out(api: ApiUnderTest) -> None:
    home = tenant()

    created = await api.call("PUT", f"{PROVIDERS}/EMAIL", tenant=home, json=EMAIL_PROVIDER)
    without_password = {key: value for key, value in EMAIL_PROVIDER.items() if key != "password"}
    replaced = await api.call(
        "PUT", f"{PROVIDERS}/EMAIL", tenant=home, json={**without_password, "port": 2525}
    )
    sms = await api.call("PUT", f"{PROVIDERS}/SMS", tenant=home, json=SMS_PROVIDER)
    listed = await api.call("GET", PROVIDERS, tenant=home)

    assert (created.status, replaced.status, sms.status) == (201, 200, 201)
    email = created.json()
    assert email["email"]["passwordSet"] is True
    assert email["email"]["passwordHint"] == SMTP_PASSWORD[-4:]
    assert (
        email["mode"],
        email["maxRetryAttempts"],
        email["initialBackoffSeconds"],
        email["backoffMultiplier"],
    ) == (
        "live",
        3,
        2.0,
        2.0,
    )
    assert (replaced.json()["email"]["port"], replaced.json()["email"]["passwordHint"]) == (
        2525,
        SMTP_PASSWORD[-4:],
    )
    assert replaced.json()["version"] > email["version"]
    assert [item["channel"] for item in listed.json()["items"]] == ["EMAIL", "SMS"]
    assert listed.json()["items"][1]["sms"]["authTokenHint"] == AUTH_TOKEN[-4:]
    stored = await api.mongo.collection("channel_providers").find_one({"tenantId": home, "channel": "EMAIL"})
    assert stored is not None
    assert api.secret_box.decrypt(stored["email"]["passwordCiphertext"]) == SMTP_PASSWORD


async def test_provider_settings_that_cannot_work_are_refused_naming_the_field(api: ApiUnderTest) -> None:
    home = tenant()
    sms_without_token = {key: value for key, value in SMS_PROVIDER.items() if key != "authToken"}

    refusals = [
        await api.call("PUT", f"{PROVIDERS}/EMAIL", tenant=home, json={**EMAIL_PROVIDER, "security": "none"}),
        await api.call(
            "PUT", f"{PROVIDERS}/EMAIL", tenant=home, json={**EMAIL_PROVIDER, "fromAddress": "nope"}
        ),
        await api.call("PUT", f"{PROVIDERS}/SMS", tenant=home, json=sms_without_token),
        await api.call(
            "PUT", f"{PROVIDERS}/SMS", tenant=home, json={**SMS_PROVIDER, "messagingServiceSid": "MG1"}
        ),
        await api.call("PUT", f"{PROVIDERS}/PAGERDUTY", tenant=home, json={"eventsUrl": "ftp://x"}),
        await api.call("PUT", f"{PROVIDERS}/WEBHOOK", tenant=home, json={}),
    ]
    plaintext_local = await api.call(
        "PUT",
        f"{PROVIDERS}/EMAIL",
        tenant=home,
        json={**EMAIL_PROVIDER, "host": "127.0.0.1", "security": "none", "port": 1025},
    )

    assert [(reply.status, reply.error.get("field")) for reply in refusals] == [
        (422, "security"),
        (422, "fromAddress"),
        (422, "authToken"),
        (422, None),
        (422, "eventsUrl"),
        (404, "channel"),
    ]
    assert plaintext_local.status == 201
    assert (await api.call("DELETE", f"{PROVIDERS}/EMAIL", tenant=home)).status == 204
    assert (await api.call("DELETE", f"{PROVIDERS}/EMAIL", tenant=home)).status == 404


async def test_destinations_are_validated_masked_and_unique_per_customer_and_channel(
    api: ApiUnderTest,
) -> None:
    home = tenant()

    async def register(channel: str, address: str, customer: str = "c1") -> Any:
        return await api.call(
            "POST",
            DESTINATIONS,
            tenant=home,
            json={"endCustomerId": customer, "channel": channel, "address": address},
        )

    email = await register("EMAIL", "Jane.Doe@Acme.example.com")
    phone = await register("SMS", "+44 7911 123123")
    pager = await register("PAGERDUTY", ROUTING_KEY)
    duplicates = [
        await register("EMAIL", "jane.doe@acme.example.com"),
        await register("SMS", "+447911123123"),
        await register("PAGERDUTY", ROUTING_KEY),
    ]
    other_customer = await register("SMS", "+447911123123", customer="c2")
    invalid = [
        await register("EMAIL", "jane"),
        await register("SMS", "07911123123"),
        await register("PAGERDUTY", "short"),
        await register("WEBHOOK", "https://example.com"),
    ]

    assert (email.status, phone.status, pager.status, other_customer.status) == (201, 201, 201, 201)
    assert (email.json()["address"], email.json()["maskedAddress"]) == (
        "Jane.Doe@acme.example.com",
        "J***@acme.example.com",
    )
    assert (phone.json()["address"], phone.json()["maskedAddress"]) == ("+447911123123", "+4479*****123")
    assert (pager.json()["address"], pager.json()["maskedAddress"]) == (None, f"****{ROUTING_KEY[-4:]}")
    assert (email.json()["events"], email.json()["active"], email.json()["version"]) == (["*"], True, 1)
    assert [(reply.status, reply.error["code"]) for reply in duplicates] == [
        (409, "destination_address_exists")
    ] * 3
    assert [(reply.status, reply.error.get("field")) for reply in invalid] == [
        (422, "address"),
        (422, "address"),
        (422, "address"),
        (422, "channel"),
    ]

    destination_id = phone.json()["destinationId"]
    changed = await api.call(
        "PATCH",
        f"{DESTINATIONS}/{destination_id}",
        tenant=home,
        json={"active": False, "events": ["PAYMENT_OVERDUE"], "label": "on-call phone"},
    )
    assert (
        changed.status,
        changed.json()["active"],
        changed.json()["events"],
        changed.json()["version"],
    ) == (
        200,
        False,
        ["PAYMENT_OVERDUE"],
        2,
    )
    listed = await api.call("GET", DESTINATIONS, tenant=home, params={"endCustomerId": "c1"})
    assert [item["channel"] for item in listed.json()["items"]] == ["EMAIL", "SMS", "PAGERDUTY"]
    assert (await api.call("DELETE", f"{DESTINATIONS}/{destination_id}", tenant=home)).status == 204
    assert (await register("SMS", "+447911123123")).status == 201

    stored = await api.mongo.collection("contact_destinations").find_one(
        {"tenantId": home, "destinationId": pager.json()["destinationId"]}
    )
    assert stored is not None
    assert api.secret_box.decrypt(stored["addressCiphertext"]) == ROUTING_KEY
    assert stored["address"] is None


async def test_a_destination_test_needs_a_provider_and_then_sends_notification_test(
    api: ApiUnderTest,
) -> None:
    home = tenant()
    created = await api.call(
        "POST",
        DESTINATIONS,
        tenant=home,
        json={"endCustomerId": "c1", "channel": "SMS", "address": "+447911123123"},
    )
    destination_id = created.json()["destinationId"]

    without_provider = await api.call("POST", f"{DESTINATIONS}/{destination_id}/test", tenant=home)
    assert (await api.call("PUT", f"{PROVIDERS}/SMS", tenant=home, json=SMS_PROVIDER)).status == 201
    async with api.reader(api.topics.dispatch_requests) as reader:
        probe = await api.call("POST", f"{DESTINATIONS}/{destination_id}/test", tenant=home)
        records = await reader.until(
            lambda records: any(destination_id.encode() in (record.value or b"") for record in records),
            timeout=20,
        )

    assert (without_provider.status, without_provider.error["code"]) == (409, "provider_not_configured")
    assert probe.status == 202
    (record,) = [record for record in records if destination_id.encode() in (record.value or b"")]
    request = DispatchRequest.from_json_bytes(bytes(record.value or b""))
    assert (request.kind.value, request.channel.value, request.endpoint_id, request.envelope.event_type) == (
        "test",
        "SMS",
        destination_id,
        "notification.test",
    )
    assert request.envelope.event_id == probe.headers["X-Aforo-Event-Id"]


async def test_template_overrides_are_checked_against_a_sample_event(api: ApiUnderTest) -> None:
    home = tenant()
    path = f"{TEMPLATES}/INVOICE_GENERATED/EMAIL"

    built_in = await api.call("GET", path, tenant=home)
    refusals = [
        await api.call("PUT", path, tenant=home, json={"subject": "Invoice {{ payload.invoiceNumbr }}"}),
        await api.call("PUT", path, tenant=home, json={"text": "Dear {{ customer_name }}"}),
        await api.call("PUT", path, tenant=home, json={"html": "<p>{% if %}</p>"}),
        await api.call("PUT", path, tenant=home, json={"subject": "Hi{{ '\\r\\n' }}Bcc: victim@example.com"}),
        await api.call("PUT", path, tenant=home, json={"text": "{{ ''.__class__.__mro__ }}"}),
        await api.call("PUT", f"{TEMPLATES}/INVOICE_GENERATED/SMS", tenant=home, json={"html": "<b>x</b>"}),
        await api.call("PUT", path, tenant=home, json={}),
    ]
    saved = await api.call(
        "PUT",
        path,
        tenant=home,
        json={"subject": "Invoice {{ payload.invoiceNumber }}", "html": "<p>{{ payload.invoiceNumber }}</p>"},
    )
    read_back = await api.call("GET", path, tenant=home)
    unknown = await api.call("GET", f"{TEMPLATES}/NO_SUCH_EVENT/EMAIL", tenant=home)

    assert (built_in.status, built_in.json()["builtIn"], built_in.json()["subject"]) == (
        200,
        True,
        "Your invoice is ready",
    )
    assert [(reply.status, reply.error.get("field")) for reply in refusals] == [
        (422, "subject"),
        (422, "text"),
        (422, "html"),
        (422, "subject"),
        (422, "text"),
        (422, "html"),
        (422, None),
    ]
    assert "invoiceNumbr" in refusals[0].error["message"]
    assert "customer_name" in refusals[1].error["message"]
    assert "syntax error on line 1" in refusals[2].error["message"]
    assert saved.status == 200
    assert saved.json()["preview"]["subject"] == "Invoice INV-2026-0000042"
    assert saved.json()["preview"]["text"].startswith("Your invoice is ready.")  # the built-in text part
    assert (read_back.json()["builtIn"], read_back.json()["subject"], read_back.json()["text"]) == (
        False,
        "Invoice {{ payload.invoiceNumber }}",
        None,
    )
    assert unknown.status == 404


async def test_custom_event_templates_take_any_payload_field_but_check_names(api: ApiUnderTest) -> None:
    home = tenant()
    event_type = f"CUSTOM_{uuid.uuid4().hex[:6].upper()}"
    definition = {
        "eventType": event_type,
        "displayName": "Quota warning",
        "category": "Usage",
        "severity": "WARNING",
        "defaultChannels": ["SMS"],
    }
    assert (
        await api.call("POST", "/api/v1/admin/event-definitions", tenant=home, json=definition)
    ).status == 201
    path = f"{TEMPLATES}/{event_type}/SMS"

    generic = await api.call("GET", path, tenant=home)
    saved = await api.call("PUT", path, tenant=home, json={"text": "{{ display_name }}: {{ payload.quota }}"})
    refused = await api.call("PUT", path, tenant=home, json={"text": "{{ quota }}"})

    assert generic.json()["preview"]["text"].startswith("Quota warning.")
    assert (saved.status, saved.json()["preview"]["text"]) == (200, "Quota warning: <quota>")
    assert (refused.status, refused.error["field"]) == (422, "text")


async def test_channel_config_changes_are_published_without_secrets(api: ApiUnderTest) -> None:
    home = tenant()
    async with api.reader(api.topics.config_changes) as reader:
        await api.call("PUT", f"{PROVIDERS}/SMS", tenant=home, json=SMS_PROVIDER)
        await api.call("PUT", f"{PROVIDERS}/EMAIL", tenant=home, json=EMAIL_PROVIDER)
        await api.call(
            "POST",
            DESTINATIONS,
            tenant=home,
            json={"endCustomerId": "c1", "channel": "PAGERDUTY", "address": ROUTING_KEY},
        )
        await api.call(
            "PUT", f"{TEMPLATES}/INVOICE_GENERATED/SMS", tenant=home, json={"text": "x {{ event_id }}"}
        )
        records = await reader.until(
            lambda records: sum(home.encode() in (record.key or b"") for record in records) >= 4, timeout=20
        )

    mine = [
        loads_json(bytes(record.value or b"")) for record in records if home.encode() in (record.key or b"")
    ]
    assert {change["kind"] for change in mine} == {
        "channel_provider",
        "contact_destination",
        "channel_template",
    }
    published = b"".join(bytes(record.value or b"") for record in records)
    for secret in (SMTP_PASSWORD, AUTH_TOKEN, ROUTING_KEY, b"Ciphertext".decode()):
        assert secret.encode() not in published
    log = api.process.log_text()
    for secret in (SMTP_PASSWORD, AUTH_TOKEN, ROUTING_KEY):
        assert secret not in log
    assert all(
        secret.encode() not in reply.body
        for reply in api.replies
        for secret in (SMTP_PASSWORD, AUTH_TOKEN, ROUTING_KEY)
    )
