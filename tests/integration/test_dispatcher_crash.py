"""SIGKILL the dispatcher with retries pending and 1,000 events in flight against a flapping
receiver; after a restart every event ends DELIVERED exactly once per endpoint, none is lost."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

from tests.support.dispatch_fixtures import DispatcherTestbed
from tests.support.stack import LocalStack

TOTAL = 1000


async def test_sigkill_with_retries_pending_loses_nothing_and_delivers_once(
    local_stack: LocalStack, service_log_dir: Path
) -> None:
    async with DispatcherTestbed(local_stack, service_log_dir) as bed:
        receiver = await bed.start_receiver()
        world, mongo = bed.world, bed.mongo
        dispatcher = bed.start_dispatcher()
        await receiver.plan("flapping", failEvery=3)  # about a third of first and second attempts fail
        endpoint_id = await world.endpoint(receiver.hook_url("flapping"), initial_backoff_seconds=1.0)
        await dispatcher.wait_ready(timeout=90)
        envelopes = [world.envelope(customer="c1") for _ in range(TOTAL)]
        await world.publish_all(envelopes)

        # Kill once deliveries are flowing and some retries are parked on the delay topics.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            delivered = await mongo.collection("delivery_logs").count_documents({"status": "DELIVERED"})
            retrying = await mongo.collection("delivery_logs").count_documents({"status": "RETRYING"})
            if delivered >= 150 and retrying >= 20:
                break
            await asyncio.sleep(0.05)
        assert delivered < TOTAL, "the dispatcher finished before it could be killed mid-stream"
        dispatcher.kill()

        restarted = bed.start_dispatcher()
        await restarted.wait_ready(timeout=90)
        final_deadline = time.monotonic() + 120
        all_ids = {e.event_id for e in envelopes}
        while True:
            final = {
                row["eventId"]
                async for row in mongo.collection("delivery_logs").find(
                    {"status": {"$in": ["DELIVERED", "FAILED"]}}, {"eventId": 1}
                )
            }
            if final >= all_ids:
                break
            if time.monotonic() > final_deadline:
                open_states = [
                    s
                    async for s in mongo.collection("delivery_state").find(
                        {"status": {"$nin": ["DELIVERED", "FAILED"]}}, {"_id": 0}
                    )
                ]
                logged = {
                    row["eventId"] async for row in mongo.collection("delivery_logs").find({}, {"eventId": 1})
                }
                raise AssertionError(
                    f"only {len(final & all_ids)} of {TOTAL} deliveries ended; open: {open_states[:10]}; "
                    f"never attempted: {sorted(all_ids - logged)[:10]}"
                )
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # let the batched log writer flush the last rows

        rows = [row async for row in mongo.collection("delivery_logs").find({"endpointId": endpoint_id})]
        delivered_rows = Counter(row["eventId"] for row in rows if row["status"] == "DELIVERED")
        failed_rows = Counter(row["eventId"] for row in rows if row["status"] == "FAILED")
        expected = {e.event_id for e in envelopes}
        assert set(delivered_rows) | set(failed_rows) == expected  # none lost
        assert all(count == 1 for count in delivered_rows.values())  # never DELIVERED twice
        assert not set(delivered_rows) & set(failed_rows)
        assert len(delivered_rows) == TOTAL  # the receiver only flaps: every event gets through
        # The state of every retried delivery is final: nothing is left owed.
        states = [s async for s in mongo.collection("delivery_state").find({"endpointId": endpoint_id})]
        assert all(state["status"] in ("DELIVERED", "FAILED") for state in states), states[:5]
        received = Counter(
            r["headers"]["X-Aforo-Event-Id"]
            for r in await receiver.received("flapping")
            if r["status"] == 200
        )
        assert set(received) == expected
        # A delivery can reach the receiver twice only if the kill fell between its 2xx and its record.
        assert sum(count - 1 for count in received.values()) <= 64
        assert restarted.terminate() == 0
