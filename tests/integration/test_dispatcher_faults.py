"""The dispatcher against a database that crashes mid-stream (issue #12): SecantusDB SIGKILLed one
second after 150 events were produced, while every event's first attempt fails and its retry is
parked on the 2 s delay tier, then restarted four seconds later. Every event must reach the receiver
and no delivery may stay RETRYING: a record whose handling failed must be read again, never skipped."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from pathlib import Path

from aiokafka import AIOKafkaProducer

from aforo.shared.mongo import MongoStore
from aforo.shared.secret_box import SecretBox, generate_key
from tests.support.database import DatabaseProcess
from tests.support.dispatch_fixtures import DispatchWorld
from tests.support.kafka import unique_prefix
from tests.support.processes import ServiceProcess
from tests.support.receiver import Receiver
from tests.support.stack import LocalStack, service_env

TOTAL = 150


async def test_a_database_crash_mid_stream_strands_no_parked_retry(
    local_stack: LocalStack, service_log_dir: Path, tmp_path: Path
) -> None:
    database_process = DatabaseProcess(tmp_path / "db").start()
    prefix = unique_prefix()
    database = f"db_{uuid.uuid4().hex[:8]}"
    key = generate_key()
    env = service_env(local_stack, prefix, database, AFORO_SECRETS_ENCRYPTION_KEYS=key)
    env["AFORO_MONGO_URI"] = database_process.uri
    receiver = await Receiver(service_log_dir).start()
    mongo = MongoStore(database_process.uri, database, app_name="test")
    producer = AIOKafkaProducer(bootstrap_servers=local_stack.kafka_bootstrap, acks="all", linger_ms=5)
    await mongo.start()
    await producer.start()
    world = DispatchWorld(mongo, producer, SecretBox([key]), prefix)
    dispatcher = ServiceProcess("aforo.dispatcher", "AFORO_DISPATCHER_", env, service_log_dir).start()
    try:
        await receiver.plan("first-fails", failFirstAttempt=True)
        endpoint_id = await world.endpoint(receiver.hook_url("first-fails"), initial_backoff_seconds=2.0)
        await dispatcher.wait_ready(timeout=90)
        envelopes = [world.envelope(customer=f"c{i % 5}") for i in range(TOTAL)]
        for customer in {e.customer_id for e in envelopes}:
            if customer != "c1":
                await world.endpoint(
                    receiver.hook_url("first-fails"), customer=customer, initial_backoff_seconds=2.0
                )
        futures = [
            await producer.send(f"{prefix}events.system", e.to_json_bytes(), key=e.partition_key)
            for e in envelopes
        ]
        await asyncio.gather(*futures)

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
        dispatcher.close()
        receiver.stop()
        await producer.stop()
        await mongo.close()
        database_process.stop()
