"""SIGKILL the dispatcher in the middle of an e-mail burst: after a restart every message has reached
the SMTP server at least once, every event has exactly one DELIVERED row for its destination, and the
duplicates the server saw are counted and stay within the documented window (docs/channels.md)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

from aforo.shared.delivery import Channel
from tests.support.dispatch_fixtures import DispatcherTestbed
from tests.support.smtp_server import SmtpServer
from tests.support.stack import LocalStack

TOTAL = 400
PER_DESTINATION_CONCURRENCY = 8
DUPLICATE_WINDOW = 64
"""In flight at the kill (at most the per-destination concurrency) plus those sent whose rows were
still waiting for the log writer's next flush: well under this on any machine the suite runs on."""


async def test_sigkill_mid_email_burst_delivers_every_message_and_logs_each_once(
    local_stack: LocalStack, service_log_dir: Path
) -> None:
    smtp = SmtpServer(None, mode="none", delay=0.03).start()
    try:
        async with DispatcherTestbed(
            local_stack,
            service_log_dir,
            AFORO_DISPATCHER_LEASE_SECONDS="3",
            AFORO_DISPATCHER_PER_ENDPOINT_CONCURRENCY=str(PER_DESTINATION_CONCURRENCY),
        ) as bed:
            world, mongo = bed.world, bed.mongo
            dispatcher = bed.start_dispatcher()
            await world.email_provider("127.0.0.1", smtp.port)
            destination_id = await world.destination(Channel.EMAIL, "jane@customer.example.com")
            await world.preference("INVOICE_GENERATED", channels=["EMAIL"])
            await dispatcher.wait_ready(timeout=90)
            envelopes = [world.envelope(customer="c1") for _ in range(TOTAL)]
            await world.publish_all(envelopes)

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

            restarted = bed.start_dispatcher()
            await restarted.wait_ready(timeout=90)
            final_deadline = time.monotonic() + 180
            rows: list[dict[str, object]] = []
            while True:
                rows = [
                    row
                    async for row in mongo.collection("delivery_logs").find(
                        {"channel": "EMAIL", "status": "DELIVERED"},
                        {"_id": 0, "eventId": 1, "destinationId": 1},
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
            assert restarted.terminate() == 0
    finally:
        smtp.stop()
