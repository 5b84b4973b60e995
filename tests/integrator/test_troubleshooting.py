"""The guide's troubleshooting table, symptom by symptom, against the real stack: each test produces
the symptom and finds exactly the words the table tells users to look for."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from aforo.api.auth import AuthConfig
from aforo.api.dev_tokens import mint_dev_token
from aforo_webhooks import WebhookVerificationError, verify
from tests.integrator.stack import ISSUER, IntegratorStack
from tests.support.api_harness import JWT_SECRET
from tests.support.stack import ROOT

GUIDE = ROOT / "docs" / "receiving-webhooks.md"

# symptom in the guide's table → the words it says to look for (each test below produces it)
LOOK_FOR = {
    "401 on every API call, after it worked for a while": "token_expired",
    "401 with a token from another identity provider or realm": "invalid_issuer",
    "409 when registering an endpoint": "endpoint_url_exists",
    "an emitted CUSTOM event never arrives (customer turned it off)": "preference_disabled",
    "an emitted CUSTOM event never arrives (endpoint not subscribed)": "endpoint_filter",
    "every delivery fails verification in your handler": "no_matching_signature",
    "FAILED rows although your handler does its work": "Read timed out",
}


def troubleshooting_table() -> dict[str, str]:
    """The guide's table: symptom → the code or words in backticks in its 'look for' column."""
    text = GUIDE.read_text(encoding="utf-8")
    section = text.split("## Troubleshooting", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and not set(cells[0]) <= {"-", " "} and cells[0] != "symptom":
            found = re.search(r"`([^`]+)`", cells[1])
            assert found, line
            rows[cells[0]] = found.group(1)
    return rows


def test_the_guides_table_is_the_one_these_tests_reproduce() -> None:
    assert troubleshooting_table() == LOOK_FOR


async def api_get(stack: IntegratorStack, token: str) -> tuple[int, dict[str, Any]]:
    async with stack.http.get(
        f"{stack.api.process.url}/api/v1/admin/event-definitions",
        headers={"Authorization": f"Bearer {token}", "X-Tenant-Id": "t1"},
    ) as response:
        return response.status, await response.json()


async def test_an_expired_token_is_401_token_expired(stack: IntegratorStack) -> None:
    config = AuthConfig(mode="hs256", hs256_secret=JWT_SECRET, issuer=ISSUER)
    expired = mint_dev_token(
        config, tenant_id="t1", roles=["ADMIN"], ttl_seconds=60, now=datetime.now(UTC) - timedelta(hours=2)
    )

    status, body = await api_get(stack, expired)

    assert status == 401
    assert body["error"]["code"] == LOOK_FOR["401 on every API call, after it worked for a while"]


async def test_a_token_of_another_issuer_is_401_invalid_issuer(stack: IntegratorStack) -> None:
    config = AuthConfig(mode="hs256", hs256_secret=JWT_SECRET, issuer="https://id.example/realms/other")
    foreign = mint_dev_token(config, tenant_id="t1", roles=["ADMIN"])

    status, body = await api_get(stack, foreign)

    assert status == 401
    assert body["error"]["code"] == LOOK_FOR["401 with a token from another identity provider or realm"]


async def test_registering_the_same_url_twice_is_409_endpoint_url_exists(stack: IntegratorStack) -> None:
    await stack.register("trouble-dup")

    again = await stack.harness_call(
        "POST", "/harness/webhook/register", json={"endCustomerId": "trouble-dup", "events": ["*"]}
    )

    assert again.status == 409
    assert again.body["error"]["code"] == LOOK_FOR["409 when registering an endpoint"]


async def emit_until_skipped(stack: IntegratorStack, event_type: str, customer: str) -> dict[str, Any]:
    """Emit until an event is SKIPPED (a configuration change reaches the dispatcher within its bound)."""
    for _ in range(15):
        event_id = await stack.emit(event_type, customer, {"amount": 1})
        [row] = await stack.wait_rows(
            customer, lambda r, e=event_id: r["eventId"] == e and r["status"] != "PENDING"
        )
        if row["status"] == "SKIPPED":
            return row
    raise AssertionError(f"{event_type} for {customer} was never skipped")


async def test_a_custom_event_the_customer_turned_off_is_skipped_preference_disabled(
    stack: IntegratorStack,
) -> None:
    await stack.define("TROUBLE_OFF")
    await stack.register("trouble-off")
    saved = await stack.api.portal(
        "PUT",
        "/api/v1/notification-preferences",
        customer="trouble-off",
        json={"eventType": "TROUBLE_OFF", "enabled": False, "channels": ["WEBHOOK"]},
    )
    assert saved.status == 200, saved.body

    row = await emit_until_skipped(stack, "TROUBLE_OFF", "trouble-off")

    assert row["skipReason"] == LOOK_FOR["an emitted CUSTOM event never arrives (customer turned it off)"]
    assert "turned this event type off" in row["explanation"]


async def test_a_custom_event_the_endpoint_is_not_subscribed_to_is_skipped_endpoint_filter(
    stack: IntegratorStack,
) -> None:
    await stack.define("TROUBLE_FILTERED")
    await stack.register("trouble-filter", events=["INVOICE_GENERATED"])

    row = await emit_until_skipped(stack, "TROUBLE_FILTERED", "trouble-filter")

    assert row["skipReason"] == LOOK_FOR["an emitted CUSTOM event never arrives (endpoint not subscribed)"]
    assert "not subscribed" in row["explanation"]
    assert row["endpointId"]


async def test_verifying_the_reserialised_body_fails_while_the_raw_body_passes(
    stack: IntegratorStack,
) -> None:
    # The test is the integrator here: it holds the secret, the harness's receiver only records.
    secret = "whsec_troubleshooting_raw_body_0123456789"
    endpoint_id = await stack.register_with_secret("trouble-raw", secret)
    event_id = await stack.probe(endpoint_id)
    [delivery] = await stack.wait_delivery(lambda d: d["eventId"] == event_id)
    raw = delivery["body"].encode("utf-8")
    header = delivery["headers"]["X-Aforo-Signature"]

    envelope = verify(raw, header, secret)
    reserialised = json.dumps(json.loads(raw)).encode("utf-8")  # what json.loads + json.dumps hands over
    try:
        verify(reserialised, header, secret)
    except WebhookVerificationError as error:
        reason = error.reason
    else:
        raise AssertionError("a re-serialised body verified")

    assert envelope["eventId"] == event_id
    assert reason == LOOK_FOR["every delivery fails verification in your handler"]


async def test_a_handler_slower_than_5_s_leaves_a_failed_row_saying_read_timed_out(
    stack: IntegratorStack,
) -> None:
    endpoint_id = await stack.register("trouble-slow", maxRetryAttempts=1)
    scripted = await stack.harness_call(
        "PUT", "/harness/receiver", json={"script": {"answer": "slow", "count": 1}}
    )
    assert scripted.status == 200, scripted.body
    event_id = await stack.probe(endpoint_id)

    [row] = await stack.wait_rows(
        "trouble-slow", lambda r: r["eventId"] == event_id and r["status"] == "FAILED"
    )

    assert LOOK_FOR["FAILED rows although your handler does its work"] in row["error"]
    assert row["replayable"]
    [delivery] = await stack.wait_delivery(lambda d: d["eventId"] == event_id)
    assert delivery["answer"]["label"].startswith("200 after")  # the handler did its work, too late
