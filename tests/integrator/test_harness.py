"""The harness against the real stack, through the routes its page calls: what the inbox and the audit
show for genuine, rotated, forged, retried, duplicated, gone and replayed deliveries."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aforo.shared.serde import dumps_json
from aforo.shared.signing import sign_payload
from tests.integrator.stack import SOURCE_TOPIC, IntegratorStack, eventually


async def probe_until(
    stack: IntegratorStack, endpoint_id: str, wanted: Any, timeout: float = 60.0
) -> dict[str, Any]:
    """Probe until a probe's delivery satisfies `wanted` (configuration changes take a moment to apply)."""

    async def attempt() -> dict[str, Any] | None:
        event_id = await stack.probe(endpoint_id)
        [delivery] = await stack.wait_delivery(lambda d: d["eventId"] == event_id)
        return delivery if wanted(delivery) else None

    return await eventually(attempt, timeout, "a probe delivery as wanted")


async def set_receiver(stack: IntegratorStack, **settings: Any) -> None:
    answer = await stack.harness_call("PUT", "/harness/receiver", json=settings, tenant=None)
    assert answer.status == 200, answer.body


async def test_a_development_token_opens_the_catalog(stack: IntegratorStack) -> None:
    minted = await stack.harness_call("POST", "/harness/dev-token", json={"tenant": "t1"}, tenant=None)
    assert minted.status == 200, minted.body

    async with stack.http.get(
        f"{stack.harness_url}/harness/api/api/v1/admin/event-definitions",
        headers={"Authorization": f"Bearer {minted.body['token']}", "X-Tenant-Id": "t1"},
    ) as response:
        catalog = await response.json()

    assert response.status == 200
    by_type = {item["eventType"]: item for item in catalog["items"]}
    assert by_type["PAYMENT_OVERDUE"]["mandatory"] is True
    assert by_type["INVOICE_GENERATED"]["source"] == "SYSTEM"


async def test_a_bad_trigger_rule_is_refused_with_its_rule_path(stack: IntegratorStack) -> None:
    answer = await stack.harness_call(
        "POST",
        "/harness/api/api/v1/admin/event-definitions",
        json={
            "eventType": "HARNESS_BAD_RULE",
            "displayName": "Bad rule",
            "category": "Custom",
            "severity": "INFO",
            "defaultChannels": ["WEBHOOK"],
            "triggerRule": {
                "sourceEvents": ["INVOICE_GENERATED"],
                "match": {
                    "all": [
                        {"field": "amountDue", "op": "gte", "value": 1},
                        {"field": "x", "op": "nope", "value": 1},
                    ]
                },
            },
        },
    )

    assert answer.status == 422
    assert answer.body["error"]["field"] == "triggerRule.match.all[1].op"


async def test_the_proxy_forwards_only_the_api_routes(stack: IntegratorStack) -> None:
    answer = await stack.harness_call("GET", "/harness/api/metrics")

    assert answer.status == 404


async def test_a_probe_arrives_verified_and_a_rotation_verifies_with_both_secrets(
    stack: IntegratorStack,
) -> None:
    endpoint_id = await stack.register("h-rotate")
    first = await probe_until(stack, endpoint_id, lambda d: True)
    assert (first["verified"], first["answer"]["status"]) == (True, 200)

    rotated = await stack.harness_call("POST", f"/harness/webhook/{endpoint_id}/rotate")
    assert rotated.status == 200, rotated.body
    assert len(rotated.body["secretLabels"]) == 2

    both = await probe_until(stack, endpoint_id, lambda d: len(d["matched"]) == 2)
    assert both["verified"]
    assert both["headers"]["X-Aforo-Signature"].count("v1=") == 2
    assert both["matched"] == rotated.body["secretLabels"]


async def test_checking_with_a_wrong_secret_or_an_altered_body_shows_why_it_failed(
    stack: IntegratorStack,
) -> None:
    endpoint_id = await stack.register("h-forged", maxRetryAttempts=1)
    try:
        await set_receiver(stack, mode="wrong-secret")
        wrong_id = await stack.probe(endpoint_id)
        wrong = await stack.wait_delivery(lambda d: d["eventId"] == wrong_id)
        await set_receiver(stack, mode="altered-body")
        event_id = await stack.probe(endpoint_id)
        altered = await stack.wait_delivery(lambda d: d["eventId"] == event_id)
    finally:
        await set_receiver(stack, mode="normal")

    assert (wrong[0]["verified"], wrong[0]["reason"], wrong[0]["answer"]["status"]) == (
        False,
        "wrong_secret",
        400,
    )
    assert wrong[0]["explanation"].startswith("wrong secret")
    assert (altered[0]["verified"], altered[0]["reason"]) == (False, "body_altered")
    assert altered[0]["explanation"].startswith("body altered")


async def test_scripted_500s_are_retried_and_the_audit_shows_every_attempt(stack: IntegratorStack) -> None:
    endpoint_id = await stack.register("h-retry", maxRetryAttempts=3, initialBackoffSeconds=1)
    await set_receiver(stack, script={"answer": "500", "count": 2})
    event_id = await stack.probe(endpoint_id)

    deliveries = await stack.wait_delivery(lambda d: d["eventId"] == event_id, count=3, timeout=60)
    rows = await stack.wait_rows(
        "h-retry", lambda r: r["eventId"] == event_id and r["status"] != "PENDING", count=3
    )

    assert [d["answer"]["status"] for d in deliveries] == [500, 500, 200]
    assert [d["attempt"] for d in deliveries] == ["1", "2", "3"]
    assert [d["repeatOf"] for d in deliveries[1:]] == [deliveries[0]["seq"], deliveries[1]["seq"]]
    assert not any(d["duplicate"] for d in deliveries)  # retries of refused attempts are not duplicates
    assert sorted((r["attempt"], r["status"]) for r in rows) == [
        (1, "RETRYING"),
        (2, "RETRYING"),
        (3, "DELIVERED"),
    ]


async def test_a_slow_answer_that_still_did_the_work_makes_the_retry_a_duplicate(
    stack: IntegratorStack,
) -> None:
    endpoint_id = await stack.register("h-duplicate", maxRetryAttempts=2, initialBackoffSeconds=1)
    await set_receiver(stack, script={"answer": "slow", "count": 1})
    event_id = await stack.probe(endpoint_id)

    first, second = await stack.wait_delivery(lambda d: d["eventId"] == event_id, count=2, timeout=60)

    assert first["answer"]["label"].startswith("200 after")
    assert (second["duplicate"], second["duplicateOf"]) == (True, first["seq"])


async def test_410_fails_the_delivery_and_disables_the_endpoint(stack: IntegratorStack) -> None:
    endpoint_id = await stack.register("h-gone")
    await set_receiver(stack, script={"answer": "410", "count": 1})
    event_id = await stack.probe(endpoint_id)

    [row] = await stack.wait_rows("h-gone", lambda r: r["eventId"] == event_id and r["status"] == "FAILED")

    assert row["responseStatus"] == 410
    listed = await stack.harness_call(
        "GET", "/harness/api/api/v1/webhook-endpoints", params={"endCustomerId": "h-gone"}
    )
    [endpoint] = listed.body["items"]
    assert endpoint["active"] is False
    assert "410" in endpoint["disabledReason"]


async def test_a_failed_delivery_replayed_from_the_audit_arrives_with_the_same_event_id(
    stack: IntegratorStack,
) -> None:
    endpoint_id = await stack.register("h-replay", maxRetryAttempts=1)
    await set_receiver(stack, script={"answer": "500", "count": 1})
    event_id = await stack.probe(endpoint_id)
    [failed] = await stack.wait_rows(
        "h-replay", lambda r: r["eventId"] == event_id and r["status"] == "FAILED"
    )
    assert failed["replayable"]
    assert failed["explanation"].startswith("failed, no more attempts: HTTP 500")

    replay = await stack.harness_call("POST", f"/harness/api/api/v1/deliveries/{failed['deliveryId']}/replay")
    assert replay.status == 202, replay.body
    await stack.wait_rows("h-replay", lambda r: r["eventId"] == event_id and r["status"] == "DELIVERED")

    deliveries = await stack.wait_delivery(lambda d: d["eventId"] == event_id, count=2)
    assert [d["answer"]["status"] for d in deliveries] == [500, 200]


async def test_a_system_event_produced_from_the_harness_comes_through_the_bridge(
    stack: IntegratorStack,
) -> None:
    await stack.register("h-system")
    state = await stack.harness_call("GET", "/harness/state", tenant=None)
    topic = f"{stack.api.prefix}{SOURCE_TOPIC}"
    assert {"topic": topic, "eventType": "INVOICE_GENERATED"} in state.body["producerTopics"]

    produced = await stack.harness_call(
        "POST",
        "/harness/fire/system",
        json={
            "topic": topic,
            "record": {
                "tenantId": "t1",
                "customerId": "h-system",
                "eventId": "inv-harness-1",
                "amountDue": 4200,
            },
        },
    )
    assert produced.status == 202, produced.body

    [delivery] = await stack.wait_delivery(lambda d: d["eventId"] == "inv-harness-1", timeout=60)
    assert delivery["eventType"] == "INVOICE_GENERATED"
    assert delivery["verified"]
    assert json.loads(delivery["body"])["payload"]["amountDue"] == 4200


async def test_the_inbox_stream_resumes_after_last_event_id(stack: IntegratorStack) -> None:
    endpoint_id = await stack.register("h-stream")
    already = len(await stack.inbox())
    event_id = await stack.probe(endpoint_id)

    async with stack.http.get(
        f"{stack.harness_url}/harness/inbox/stream", headers={"Last-Event-ID": str(already)}
    ) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")

        async def next_delivery() -> dict[str, Any]:
            data = None
            async for raw in response.content:
                line = raw.decode().rstrip("\n")
                if line.startswith("data: "):
                    data = json.loads(line[len("data: ") :])
                elif line == "" and data is not None:
                    return data
            raise AssertionError("the stream ended")

        seen = []
        async with asyncio.timeout(30):
            while event_id not in seen:
                delivery = await next_delivery()
                assert delivery["seq"] > already
                seen.append(delivery["eventId"])


async def test_the_receiver_keeps_every_delivery_it_acknowledged(stack: IntegratorStack) -> None:
    before = len(await stack.inbox())
    secret_state = await stack.harness_call("GET", "/harness/state", tenant=None)
    assert secret_state.body["secrets"], "earlier tests generated a secret"
    bodies = [dumps_json({"eventId": f"burst-{n}", "eventType": "burst"}) for n in range(100)]

    async def deliver(body: bytes) -> int:
        header = sign_payload(body, ["whsec_not_the_harness_secret"], int(time.time()))
        async with stack.http.post(
            f"{stack.harness_url}/receiver", data=body, headers={"X-Aforo-Signature": header}
        ) as response:
            return response.status

    statuses = await asyncio.gather(*(deliver(body) for body in bodies))

    inbox = (await stack.inbox())[before:]
    burst = [d for d in inbox if d["eventId"].startswith("burst-")]
    assert set(statuses) == {400}  # answered (as unverified), and so kept
    assert sorted(d["eventId"] for d in burst) == sorted(f"burst-{n}" for n in range(100))
    assert len({d["seq"] for d in burst}) == 100


async def test_the_page_and_its_assets_are_served(stack: IntegratorStack) -> None:
    texts = {}
    for path in ("/", "/static/harness.js", "/static/harness.css"):
        async with stack.http.get(f"{stack.harness_url}{path}") as response:
            assert response.status == 200, path
            texts[path] = await response.text()

    for section in ("catalog", "webhook", "fire", "inbox", "audit"):
        assert f'<section id="{section}">' in texts["/"]
    assert "EventSource('/harness/inbox/stream')" in texts["/static/harness.js"]
