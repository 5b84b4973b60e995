"""The dispatcher against a database that crashes mid-stream (issue #12): SecantusDB SIGKILLed one
second after 150 events were produced, while every event's first attempt fails and its retry is
parked on the 2 s delay tier, then restarted four seconds later. Every event must reach the receiver
and no delivery may stay RETRYING: a record whose handling failed must be read again, never skipped."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

from tests.support.database import DatabaseProcess
from tests.support.dispatch_fixtures import DispatcherTestbed
from tests.support.stack import LocalStack

TOTAL = 150


async def test_a_database_crash_mid_stream_strands_no_parked_retry(
    local_stack: LocalStack, service_log_dir: Path, tmp_path: Path
) -> None:
    database_process = DatabaseProcess(tmp_path / "db").start()
    try:
        async with DispatcherTestbed(local_stack, service_log_dir, mongo_uri=database_process.uri) as bed:
            receiver = await bed.start_receiver()
            world, mongo = bed.world, bed.mongo
            dispatcher = bed.start_dispatcher()
            await receiver.plan("first-fails", failFirstAttempt=True)
            endpoint_id = await world.endpoint(receiver.hook_url("first-fails"), initial_backoff_seconds=2.0)
            await dispatcher.wait_ready(timeout=90)
            envelopes = [world.envelope(customer=f"c{i % 5}") for i in range(TOTAL)]
            for customer in {e.customer_id for e in envelopes}:
                if customer != "c1":
                    await world.endpoint(
                        receiver.hook_url("first-fails"), customer=customer, initial_backoff_seconds=2.0
                    )
            await world.publish_all(envelopes)

            await asyncio.sleep(1.0)
            database_process.kill()
            await asyncio.sleep(4.0)
            database_process.start()

            expected = {e.event_id for e in envelopes}
            deadline = time.monotonic() + 150
            delivered: set[str] = set()
            while time.monotonic() < deadline:
                delivered = {
                    r["headers"]["X-Aforo-Event-Id"]
                    for r in await receiver.received("first-fails")
                    if r["status"] == 200
                }
                if delivered >= expected:
                    break
                await asyncio.sleep(0.5)
            assert delivered == expected, f"{len(expected - delivered)} of {TOTAL} events never delivered"

            # Once quiet, the audit trail is final: one DELIVERED row per event, none left RETRYING.
            deadline = time.monotonic() + 30
            while True:
                rows = [row async for row in mongo.collection("delivery_logs").find({}, {"_id": 0})]
                states = [s async for s in mongo.collection("delivery_state").find({}, {"_id": 0})]
                delivered_rows = Counter(row["eventId"] for row in rows if row["status"] == "DELIVERED")
                open_states = [s for s in states if s["status"] not in ("DELIVERED", "FAILED")]
                if set(delivered_rows) == expected and not open_states:
                    break
                assert time.monotonic() < deadline, (
                    f"{len(expected - set(delivered_rows))} events without a DELIVERED row; "
                    f"open states: {open_states[:5]}"
                )
                await asyncio.sleep(0.5)
            assert all(count == 1 for count in delivered_rows.values())
            assert endpoint_id
    finally:
        database_process.stop()
