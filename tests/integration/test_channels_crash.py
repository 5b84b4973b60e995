"""SIGKILL the dispatcher in the middle of an e-mail burst: after a restart every message has reached
the SMTP server at least once, every event has exactly one DELIVERED row for its destination, and the
duplicates the server saw are counted and stay within the documented window (docs/channels.md)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from pathlib import Path

from aiokafka import AIOKafkaProducer

from aforo.shared.delivery import Channel
from aforo.shared.mongo import MongoStore
from aforo.shared.secret_box import SecretBox, generate_key
from tests.support.dispatch_fixtures import DispatchWorld
from tests.support.kafka import unique_prefix
from tests.support.processes import ServiceProcess
from tests.support.smtp_server import SmtpServer
from tests.support.stack import LocalStack, service_env

TOTAL = 400
PER_DESTINATION_CONCURRENCY = 8
DUPLICATE_WINDOW = 64
"""In flight at the kill (at most the per-destination concurrency) plus those sent whose rows were
still waiting for the log writer's next flush: well under this on any machine the suite runs on."""


async def test_sigkill_mid_email_burst_delivers_every_message_and_logs_each_once(
    local_stack: LocalStack, service_log_dir: Path
) -> None:
    prefix = unique_prefix()
    database = f"db_{uuid.uuid4().hex[:8]}"
    key = generate_key()
    env = service_env(
        local_stack,
        prefix,
        database,
        AFORO_SECRETS_ENCRYPTION_KEYS=key,
        AFORO_DISPATCHER_LEASE_SECONDS="3",
        AFORO_DISPATCHER_PER_ENDPOINT_CONCURRENCY=str(PER_DESTINATION_CONCURRENCY),
    )
    smtp = SmtpServer(None, mode="none", delay=0.03).start()
    mongo = MongoStore(local_stack.mongo_uri, database, app_name="test")
    producer = AIOKafkaProducer(bootstrap_servers=local_stack.kafka_bootstrap, acks="all", linger_ms=5)
    await mongo.start()
    await producer.start()
    world = DispatchWorld(mongo, producer, SecretBox([key]), prefix)
    dispatcher = ServiceProcess("aforo.dispatcher", "AFORO_DISPATCHER_", env, service_log_dir).start()
    restarted: ServiceProcess | None = None
    try:
        await world.email_provider("127.0.0.1", smtp.port)
        destination_id = await world.destination(Channel.EMAIL, "jane@customer.example.com")
        await world.preference("INVOICE_GENERATED", channels=["EMAIL"])
        await dispatcher.wait_ready(timeout=90)
        envelopes = [world.envelope(customer="c1") for _ in range(TOTAL)]
        futures = [
            await producer.send(f"{prefix}events.system", e.to_json_bytes(), key=e.partition_key)
            for e in envelopes
        ]
        await asyncio.gather(*futures)

        deadline = time.monotonic() + 90
        delivered = 0
        while time.monotonic() < deadline:
            delivered = await mongo.collection("delivery_logs").count_documents({"status": "DELIVERED"})
            if delivered >= 60:
                break
            await asyncio.sleep(0.05)
        assert delivered < TOTAL, "the dispatcher finished before it could be killed mid-burst"
        dispatcher.kill()
        sent_before_restart = len(smtp.received)

        restarted = ServiceProcess("aforo.dispatcher", "AFORO_DISPATCHER_", env, service_log_dir).start()
        await restarted.wait_ready(timeout=90)
        final_deadline = time.monotonic() + 180
        rows: list[dict[str, object]] = []
        while True:
            rows = [
                row
                async for row in mongo.collection("delivery_logs").find(
                    {"channel": "EMAIL", "status": "DELIVERED"}, {"_id": 0, "eventId": 1, "destinationId": 1}
                )
            ]
            if len({row["eventId"] for row in rows}) >= TOTAL:
                break
            assert time.monotonic() < final_deadline, f"only {len(rows)} of {TOTAL} e-mails DELIVERED"
            await asyncio.sleep(0.2)

        expected = {e.event_id for e in envelopes}
        delivered_rows = Counter(str(row["eventId"]) for row in rows)
        assert set(delivered_rows) == expected  # none lost
        assert all(count == 1 for count in delivered_rows.values())  # exactly one DELIVERED row each
        assert {row["destinationId"] for row in rows} == {destination_id}
        at_server = Counter(mail.message["X-Aforo-Event-Id"] for mail in smtp.received)
        assert set(at_server) == expected  # every message reached the server at least once
        message_ids = {mail.message["Message-ID"] for mail in smtp.received}
        assert len(message_ids) == TOTAL  # a repeat carries its original Message-ID
        duplicates = sum(count - 1 for count in at_server.values())
        print(f"sent before the kill: {sent_before_restart}, duplicates at the SMTP server: {duplicates}")
        assert duplicates <= DUPLICATE_WINDOW
    finally:
        dispatcher.close()
        if restarted is not None:
            assert restarted.terminate() == 0
        smtp.stop()
        await producer.stop()
        await mongo.close()
