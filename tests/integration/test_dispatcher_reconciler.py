"""The reconciler on real dispatcher processes (issue #12): a delivery whose parked retry record is
gone is taken up again by exactly one of two replicas; a busy retry tier is never reconciled."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp

from aforo.dispatcher.repositories import state_record_id
from aforo.shared.delivery import Channel
from aforo.shared.delivery_log import delivery_id
from tests.support.dispatch_fixtures import DispatcherTestbed
from tests.support.metrics import metric
from tests.support.processes import ServiceProcess
from tests.support.stack import LocalStack

RECONCILED = "aforo_dispatcher_reconciled_total"


def reconciling(stack: LocalStack, log_dir: Path, *, min_overdue_seconds: int) -> DispatcherTestbed:
    """A testbed whose dispatchers run a reconcile pass every half second."""
    return DispatcherTestbed(
        stack,
        log_dir,
        AFORO_DISPATCHER_RECONCILE_INTERVAL_SECONDS="0.5",
        AFORO_DISPATCHER_RECONCILE_MIN_OVERDUE_SECONDS=str(min_overdue_seconds),
    )


async def reconciled(processes: list[ServiceProcess]) -> float:
    async with aiohttp.ClientSession() as session:
        return sum(
            [
                await metric(session, process.url, RECONCILED, reason=reason)
                for process in processes
                for reason in ("retry_overdue", "lease_expired")
            ]
        )


async def test_a_retry_whose_record_is_gone_is_taken_up_once_across_two_replicas(
    local_stack: LocalStack, service_log_dir: Path
) -> None:
    async with reconciling(local_stack, service_log_dir, min_overdue_seconds=3) as bed:
        receiver = await bed.start_receiver()
        world, mongo = bed.world, bed.mongo
        replicas = [bed.start_dispatcher() for _ in range(2)]
        endpoint_id = await world.endpoint(receiver.hook_url("stranded"))
        for replica in replicas:
            await replica.wait_ready(timeout=90)
        # The state says attempt 1 failed and attempt 2 was due a minute ago, but no retry record
        # exists on any delay topic (as if its topic had been deleted): only the state knows.
        envelope = world.envelope(customer="c1")
        now = datetime.now(UTC)
        row_id = delivery_id("t1", envelope.event_id, "WEBHOOK", endpoint_id, 1)
        await mongo.collection("delivery_logs").insert_one(
            {
                "_id": row_id,
                "deliveryId": row_id,
                "tenantId": "t1",
                "endCustomerId": "c1",
                "eventId": envelope.event_id,
                "eventType": envelope.event_type,
                "channel": "WEBHOOK",
                "endpointId": endpoint_id,
                "attempt": 1,
                "status": "RETRYING",
                "skipReason": None,
                "error": "HTTP 500 Internal Server Error",
                "createdAt": now - timedelta(seconds=62),
                "nextAttemptAt": now - timedelta(seconds=60),
                "envelopeJson": envelope.to_json_bytes().decode(),
            }
        )
        await mongo.collection("delivery_state").insert_one(
            {
                "_id": state_record_id("t1", envelope.event_id, Channel.WEBHOOK, endpoint_id),
                "tenantId": "t1",
                "eventId": envelope.event_id,
                "channel": "WEBHOOK",
                "endpointId": endpoint_id,
                "status": "RETRYING",
                "attempt": 1,
                "attemptBase": 0,
                "createdAt": now - timedelta(seconds=62),
                "updatedAt": now - timedelta(seconds=62),
                "nextAttemptAt": now - timedelta(seconds=60),
            }
        )

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = await mongo.collection("delivery_state").find_one({"eventId": envelope.event_id})
            if state is not None and state["status"] == "DELIVERED":
                break
            await asyncio.sleep(0.2)
        assert state is not None
        assert state["status"] == "DELIVERED", state
        await asyncio.sleep(3.0)  # several more reconcile passes of both replicas: nothing more happens

        received = await receiver.received("stranded")
        assert [r["headers"]["X-Aforo-Delivery-Attempt"] for r in received] == ["2"]
        assert received[0]["headers"]["X-Aforo-Event-Id"] == envelope.event_id
        assert received[0]["body"] == envelope.to_json_bytes().decode()  # the stored bytes, re-sent
        rows = [r async for r in mongo.collection("delivery_logs").find({"eventId": envelope.event_id})]
        assert sorted((r["attempt"], r["status"]) for r in rows) == [(1, "RETRYING"), (2, "DELIVERED")]
        assert await reconciled(replicas) == 1
        logs = "".join(replica.log_text() for replica in replicas)
        assert logs.count('"delivery_reconciled"') == 1


async def test_a_busy_retry_tier_is_never_reconciled(local_stack: LocalStack, service_log_dir: Path) -> None:
    total = 400
    async with reconciling(local_stack, service_log_dir, min_overdue_seconds=10) as bed:
        receiver = await bed.start_receiver()
        world = bed.world
        dispatcher = bed.start_dispatcher()
        await receiver.plan("busy", failFirstAttempt=True)
        await world.endpoint(receiver.hook_url("busy"), initial_backoff_seconds=2.0)
        await dispatcher.wait_ready(timeout=90)
        envelopes = [world.envelope(customer="c1") for _ in range(total)]
        await world.publish_all(envelopes)
        expected = {e.event_id for e in envelopes}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            delivered = Counter(
                r["headers"]["X-Aforo-Event-Id"]
                for r in await receiver.received("busy")
                if r["status"] == 200
            )
            if set(delivered) >= expected:
                break
            await asyncio.sleep(0.5)
        assert set(delivered) == expected
        assert all(count == 1 for count in delivered.values())
        assert await reconciled([dispatcher]) == 0
