"""The dispatcher on the real broker, SecantusDB and a real receiver process: retries on Kafka delay
topics, timeouts, preferences, cooldown, endpoint filters, webhook.test, SSRF refusal, idempotency."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
import stripe

from aforo.shared.dispatch_requests import DispatchRequest, DispatchRequestKind
from aforo.shared.signing import verify_signature
from tests.support.dispatch_fixtures import DispatcherTestbed, DispatchWorld
from tests.support.kafka import TopicReader
from tests.support.receiver import Receiver
from tests.support.stack import LocalStack, free_port

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def receiver(service_log_dir: Path) -> AsyncIterator[Receiver]:
    receiver = await Receiver(service_log_dir).start()
    yield receiver
    receiver.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(local_stack: LocalStack, service_log_dir: Path) -> AsyncIterator[DispatchWorld]:
    async with DispatcherTestbed(
        local_stack,
        service_log_dir,
        AFORO_DISPATCHER_ATTEMPT_TIMEOUT_SECONDS="1",
        AFORO_DISPATCHER_LEASE_SECONDS="5",
    ) as bed:
        dispatcher = bed.start_dispatcher()
        await dispatcher.wait_ready(timeout=90)
        yield bed.world
        assert dispatcher.terminate() == 0


async def test_500_500_200_gets_three_signed_attempts_2s_and_4s_apart_and_one_delivered(
    world: DispatchWorld, receiver: Receiver
) -> None:
    customer = f"c-{uuid.uuid4().hex[:6]}"
    await receiver.plan("flaky", statuses=[500, 500, 200])
    endpoint_id = await world.endpoint(receiver.hook_url("flaky"), customer=customer, secrets=["whsec_flaky"])
    envelope = world.envelope(customer=customer)
    await world.publish(envelope)
    received = await receiver.wait_for("flaky", 3, timeout=30)
    rows = await world.wait_rows(3, eventId=envelope.event_id, status={"$ne": "PENDING"})
    assert [row["status"] for row in rows] == ["RETRYING", "RETRYING", "DELIVERED"]
    assert [row["attempt"] for row in rows] == [1, 2, 3]
    assert all(row["endpointId"] == endpoint_id for row in rows)
    assert rows[0]["responseStatus"] == 500
    assert rows[0]["error"].startswith("HTTP 500")
    assert rows[0]["responseBody"] == "answer 500"
    first_gap = received[1]["monotonic"] - received[0]["monotonic"]
    second_gap = received[2]["monotonic"] - received[1]["monotonic"]
    assert 1.8 <= first_gap <= 4.0, first_gap
    assert 3.8 <= second_gap <= 6.5, second_gap
    for number, request in enumerate(received, start=1):
        body = request["body"].encode()
        headers = request["headers"]
        assert body == envelope.to_json_bytes()  # the envelope's exact bytes
        assert headers["Content-Type"] == "application/json"
        assert headers["X-Aforo-Event-Id"] == envelope.event_id
        assert headers["X-Aforo-Event-Type"] == "INVOICE_GENERATED"
        assert headers["X-Aforo-Delivery-Attempt"] == str(number)
        assert verify_signature(body, headers["X-Aforo-Signature"], "whsec_flaky")
        # A receiver using Stripe's own verifier accepts the header.
        stripe.WebhookSignature.verify_header(
            request["body"], headers["X-Aforo-Signature"], "whsec_flaky", 300
        )


async def test_a_receiver_that_is_down_gets_three_attempts_then_failed_and_dead_lettered(
    world: DispatchWorld, local_stack: LocalStack
) -> None:
    customer = f"c-{uuid.uuid4().hex[:6]}"
    url = f"http://127.0.0.1:{free_port()}/nobody-listens"
    endpoint_id = await world.endpoint(url, customer=customer)
    envelope = world.envelope(customer=customer)
    await world.publish(envelope)
    rows = await world.wait_rows(3, timeout=30, eventId=envelope.event_id, status={"$ne": "PENDING"})
    assert [row["status"] for row in rows] == ["RETRYING", "RETRYING", "FAILED"]
    assert rows[-1]["error"] == "connection refused"  # the fixed vocabulary: no host or port echoed
    async with TopicReader(local_stack.kafka_bootstrap, f"{world.prefix}dlq.dispatch") as dlq:
        dead = await dlq.until(
            lambda got: any(dict(r.headers).get("aforo-endpoint-id") == endpoint_id.encode() for r in got)
        )
    record = next(r for r in dead if dict(r.headers).get("aforo-endpoint-id") == endpoint_id.encode())
    assert dict(record.headers)["aforo-dlq-reason"] == b"retries_exhausted"
    assert json.loads(record.value)["eventId"] == envelope.event_id


async def test_a_slow_receiver_fails_by_timeout(world: DispatchWorld, receiver: Receiver) -> None:
    customer = f"c-{uuid.uuid4().hex[:6]}"
    await receiver.plan("slow", sleepSeconds=2.0)
    await world.endpoint(receiver.hook_url("slow"), customer=customer, max_retry_attempts=1)
    envelope = world.envelope(customer=customer)
    await world.publish(envelope)
    [row] = await world.wait_rows(1, timeout=20, eventId=envelope.event_id, status="FAILED")
    assert row["error"].startswith("timeout")
    assert row["durationMs"] < 1900


async def test_disabled_preference_skips_while_a_mandatory_event_still_arrives(
    world: DispatchWorld, receiver: Receiver
) -> None:
    customer = f"c-{uuid.uuid4().hex[:6]}"
    await receiver.plan(customer)
    await world.endpoint(receiver.hook_url(customer), customer=customer)
    await world.preference("INVOICE_GENERATED", customer=customer, enabled=False)
    await world.preference("PAYMENT_OVERDUE", customer=customer, enabled=False)
    skipped = world.envelope("INVOICE_GENERATED", customer=customer)
    mandatory = world.envelope("PAYMENT_OVERDUE", customer=customer)
    await world.publish(skipped)
    await world.publish(mandatory)
    [delivered] = await world.wait_rows(1, eventId=mandatory.event_id, status="DELIVERED")
    [skip] = await world.wait_rows(1, eventId=skipped.event_id)
    assert skip["status"] == "SKIPPED"
    assert skip["skipReason"] == "preference_disabled"
    received = await receiver.received(customer)
    assert [r["headers"]["X-Aforo-Event-Id"] for r in received] == [mandatory.event_id]
    assert delivered["attempt"] == 1


async def test_cooldown_lets_one_of_two_events_through(world: DispatchWorld, receiver: Receiver) -> None:
    customer = f"c-{uuid.uuid4().hex[:6]}"
    await receiver.plan(customer)
    await world.endpoint(receiver.hook_url(customer), customer=customer)
    await world.preference("WALLET_LOW_BALANCE", customer=customer, cooldownMinutes=60)
    first = world.envelope("WALLET_LOW_BALANCE", customer=customer)
    second = world.envelope("WALLET_LOW_BALANCE", customer=customer)
    await world.publish(first)
    await world.publish(second)
    # The two are dispatched concurrently, so either may take the cooldown; exactly one does.
    [first_row] = await world.wait_rows(1, eventId=first.event_id, status={"$ne": "PENDING"})
    [second_row] = await world.wait_rows(1, eventId=second.event_id, status={"$ne": "PENDING"})
    outcomes = sorted((row["status"], row["skipReason"]) for row in (first_row, second_row))
    assert outcomes == [("DELIVERED", None), ("SKIPPED", "cooldown")]
    [received] = await receiver.received(customer)
    delivered = first if first_row["status"] == "DELIVERED" else second
    assert json.loads(received["body"])["eventId"] == delivered.event_id


async def test_star_and_filtered_endpoints_and_webhook_test_bypassing_the_filter(
    world: DispatchWorld, receiver: Receiver
) -> None:
    customer = f"c-{uuid.uuid4().hex[:6]}"
    for name in ("star", "filtered"):
        await receiver.plan(f"{customer}-{name}")
    star = await world.endpoint(receiver.hook_url(f"{customer}-star"), customer=customer, events=["*"])
    filtered = await world.endpoint(
        receiver.hook_url(f"{customer}-filtered"), customer=customer, events=["PAYMENT_OVERDUE"]
    )
    other_customer = await world.endpoint(receiver.hook_url(f"{customer}-other"), customer=f"{customer}-x")
    invoice = world.envelope("INVOICE_GENERATED", customer=customer)
    await world.publish(invoice)
    rows = await world.wait_rows(2, eventId=invoice.event_id, status={"$ne": "PENDING"})
    by_endpoint = {row["endpointId"]: row for row in rows}
    assert by_endpoint[star]["status"] == "DELIVERED"
    assert by_endpoint[filtered]["status"] == "SKIPPED"
    assert by_endpoint[filtered]["skipReason"] == "endpoint_filter"
    assert other_customer not in by_endpoint
    assert await receiver.received(f"{customer}-other") == []

    probe = world.envelope(
        "webhook.test", customer=customer, payload={"endpointId": filtered, "message": "test"}
    )
    await world.publish(probe, topic="events.custom")
    [row] = await world.wait_rows(1, eventId=probe.event_id, status="DELIVERED")
    assert row["endpointId"] == filtered
    assert len(await receiver.received(f"{customer}-filtered")) == 1
    assert len(await receiver.received(f"{customer}-star")) == 1  # the probe went only to its target


@pytest.mark.parametrize("host", ["10.0.0.1", "127.0.0.2", "169.254.169.254"])
async def test_a_private_address_is_refused_when_not_allowlisted(world: DispatchWorld, host: str) -> None:
    customer = f"c-{uuid.uuid4().hex[:6]}"
    await world.endpoint(f"http://{host}:9/hook", customer=customer)
    envelope = world.envelope(customer=customer)
    await world.publish(envelope)
    [row] = await world.wait_rows(1, eventId=envelope.event_id, status="FAILED")
    assert row["error"].startswith("refused:")
    assert row["attempt"] == 1  # refused addresses are not retried


async def test_redelivery_of_a_delivered_event_does_not_send_it_again(
    world: DispatchWorld, receiver: Receiver
) -> None:
    customer = f"c-{uuid.uuid4().hex[:6]}"
    await receiver.plan(customer)
    await world.endpoint(receiver.hook_url(customer), customer=customer)
    envelope = world.envelope(customer=customer)
    await world.publish(envelope)
    await world.wait_rows(1, eventId=envelope.event_id, status="DELIVERED")
    await world.publish(envelope)  # the same event again, as a Kafka redelivery would bring it
    marker = world.envelope(customer=customer)
    await world.publish(marker)
    await world.wait_rows(1, eventId=marker.event_id, status="DELIVERED")
    ids = [r["headers"]["X-Aforo-Event-Id"] for r in await receiver.received(customer)]
    assert ids.count(envelope.event_id) == 1


async def test_gone_disables_the_endpoint(world: DispatchWorld, receiver: Receiver) -> None:
    customer = f"c-{uuid.uuid4().hex[:6]}"
    await receiver.plan(customer, default=410)
    endpoint_id = await world.endpoint(receiver.hook_url(customer), customer=customer)
    envelope = world.envelope(customer=customer)
    await world.publish(envelope)
    [row] = await world.wait_rows(1, eventId=envelope.event_id, status="FAILED")
    assert row["responseStatus"] == 410
    for _ in range(50):
        endpoint = await world.mongo.collection("webhook_endpoints").find_one({"endpointId": endpoint_id})
        assert endpoint is not None
        if not endpoint["active"]:
            break
        await asyncio.sleep(0.1)
    assert endpoint["active"] is False
    later = world.envelope(customer=customer)
    await world.publish(later)
    [skip] = await world.wait_rows(1, eventId=later.event_id)
    assert skip["skipReason"] == "endpoint_inactive"


async def test_api_requests_replay_a_failed_delivery_and_probe_one_endpoint(
    world: DispatchWorld, receiver: Receiver
) -> None:
    customer = f"c-{uuid.uuid4().hex[:6]}"
    await receiver.plan(customer, statuses=[500])
    endpoint_id = await world.endpoint(receiver.hook_url(customer), customer=customer, max_retry_attempts=1)
    envelope = world.envelope(customer=customer)
    await world.publish(envelope)
    [failed] = await world.wait_rows(1, eventId=envelope.event_id, status="FAILED")
    assert failed["attempt"] == 1

    replay = DispatchRequest(
        kind=DispatchRequestKind.REPLAY,
        endpoint_id=endpoint_id,
        tenant_id="t1",
        envelope=envelope,
        requested_at=datetime.now(UTC),
        replay_of=failed["deliveryId"],
    )
    await world.producer.send_and_wait(
        f"{world.prefix}dispatch.requests", replay.to_json_bytes(), key=replay.key
    )
    [delivered] = await world.wait_rows(1, eventId=envelope.event_id, status="DELIVERED")
    assert delivered["attempt"] == 2  # a new attempt, same eventId
    received = await receiver.received(customer)
    assert [r["headers"]["X-Aforo-Event-Id"] for r in received] == [envelope.event_id] * 2

    probe = world.envelope(
        "webhook.test", customer=customer, payload={"endpointId": endpoint_id, "message": "hi"}
    )
    test_request = DispatchRequest(
        kind=DispatchRequestKind.TEST,
        endpoint_id=endpoint_id,
        tenant_id="t1",
        envelope=probe,
        requested_at=datetime.now(UTC),
    )
    await world.producer.send_and_wait(
        f"{world.prefix}dispatch.requests", test_request.to_json_bytes(), key=test_request.key
    )
    [probe_row] = await world.wait_rows(1, eventId=probe.event_id, status="DELIVERED")
    assert probe_row["endpointId"] == endpoint_id


async def test_a_rotated_secret_signs_alongside_the_new_one_until_it_retires(
    world: DispatchWorld, receiver: Receiver
) -> None:
    customer = f"c-{uuid.uuid4().hex[:6]}"
    await receiver.plan(customer)
    soon = datetime.now(UTC) + timedelta(hours=1)
    gone = datetime.now(UTC) - timedelta(seconds=1)
    await world.endpoint(
        receiver.hook_url(customer),
        customer=customer,
        secrets=["whsec_new"],
        retired_secrets={"whsec_old": soon, "whsec_ancient": gone},
    )
    envelope = world.envelope(customer=customer)
    await world.publish(envelope)
    [request] = await receiver.wait_for(customer, 1)
    header = request["headers"]["X-Aforo-Signature"]
    assert header.count("v1=") == 2  # the new secret and the one still in its overlap
    body = request["body"].encode()
    assert verify_signature(body, header, "whsec_new")
    assert verify_signature(body, header, "whsec_old")
    assert not verify_signature(body, header, "whsec_ancient")
    stripe.WebhookSignature.verify_header(request["body"], header, "whsec_old", 300)
