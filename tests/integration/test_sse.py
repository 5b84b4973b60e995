"""The SSE gateway on the real broker and SecantusDB, as real processes: a producer record through
the real bridge reaches exactly its customer's stream; origins and sessions are enforced; a revoked
session's stream ends; Last-Event-ID replays exactly the missed events, also from a replica that
restarted (SIGTERM drains: streams close, exit 0); every replica fans out every event; a client that
stops reading is cut off while the gateway's memory stays flat."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp

from aforo.shared.collections import EMBED_SESSIONS
from aforo.sse_gateway.embed_tokens import issue_session_token
from aforo.sse_gateway.widget_messages import MAX_PAYLOAD_STRING_LENGTH, WIDGET_PAYLOAD_FIELDS
from tests.support.kafka import create_topics, produce, unique_prefix
from tests.support.metrics import metric
from tests.support.processes import ServiceProcess
from tests.support.sse_harness import (
    FOREIGN_ORIGIN,
    ORIGIN,
    exchange,
    gateway_under_test,
    open_stream,
    process_rss_bytes,
    widget_envelope,
)
from tests.support.stack import LocalStack

# Every string field of an invoice.created at the longest a widget payload string may be: ~3.3 KB
# frames (longer strings are dropped from widget payloads, so frames cannot be made larger).
LARGEST_PAYLOAD = dict.fromkeys(
    WIDGET_PAYLOAD_FIELDS["aforo.invoice.created"], "x" * MAX_PAYLOAD_STRING_LENGTH
)
FRAME_BYTES = len(json.dumps(LARGEST_PAYLOAD))


def open_stalled_stream(port: int, token: str) -> socket.socket:
    """A stream whose client reads the response headers and then nothing: a raw socket with a tiny
    receive buffer, so the gateway's writes to it soon block."""
    stalled = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", port))
    stalled.sendall(
        f"GET /v1/embed/stream?access_token={token} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Origin: {ORIGIN}\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    assert b" 200 " in stalled.recv(512)
    return stalled


async def test_an_invoice_through_the_real_bridge_reaches_only_its_customers_stream(
    local_stack: LocalStack, service_log_dir: Path
) -> None:
    prefix = unique_prefix()
    bootstrap = local_stack.kafka_bootstrap
    source_topic = f"{prefix}billing.invoice.finalized"
    await create_topics(bootstrap, [source_topic])
    async with gateway_under_test(local_stack, service_log_dir, prefix) as harness:
        t1, t2 = await harness.seed("t1"), await harness.seed("t2")
        bridge = ServiceProcess(
            "aforo.bridge",
            "AFORO_BRIDGE_",
            {
                **harness.env,
                "AFORO_BRIDGE_SOURCE_TOPIC_PREFIX": prefix,
                "AFORO_BRIDGE_METADATA_MAX_AGE_MS": "1000",
            },
            service_log_dir,
        ).start()
        harness.processes.append(bridge)
        gateway, _ = await asyncio.gather(harness.start_gateway(), bridge.wait_ready())
        async with aiohttp.ClientSession() as session:
            c1_token = await exchange(session, gateway.url, t1, "c1")
            c2_token = await exchange(session, gateway.url, t1, "c2")
            other_tenant_token = await exchange(session, gateway.url, t2, "c1")

            # Refusals first: a foreign origin, a (t1, c2) session asking for (t1, c1), a forged token.
            stream_url = f"{gateway.url}/v1/embed/stream"
            async with session.get(
                stream_url, params={"access_token": c1_token}, headers={"Origin": FOREIGN_ORIGIN}
            ) as foreign:
                assert foreign.status == 403
                assert (await foreign.json())["error"]["code"] == "origin_not_allowed"
                assert "Access-Control-Allow-Origin" not in foreign.headers
            async with session.get(
                stream_url,
                params={"access_token": c2_token, "tenantId": "t1", "customerId": "c1"},
                headers={"Origin": ORIGIN},
            ) as wrong_customer:
                assert wrong_customer.status == 403
                assert (await wrong_customer.json())["error"]["code"] == "stream_forbidden"
            forged, _ = issue_session_token(
                tenant_id="t1",
                customer_id="c1",
                session_id="es_forged",
                embed_key_id=t1.embed_key_id,
                secret="not-the-gateway-secret-0123456789abcdef",
                now=datetime.now(UTC),
                ttl=timedelta(minutes=5),
            )
            async with session.get(
                stream_url, params={"access_token": forged}, headers={"Origin": ORIGIN}
            ) as forged_response:
                assert forged_response.status == 401

            async with (
                open_stream(session, gateway.url, c1_token) as c1,
                open_stream(session, gateway.url, c2_token) as c2,
                open_stream(session, gateway.url, other_tenant_token) as other_tenant,
            ):
                payload = {
                    "tenantId": "t1",
                    "customerId": "c1",
                    "invoiceId": "inv-1",
                    "amountDue": 12000,
                    "currency": "EUR",
                    "customerEmail": "ana@example.com",
                }
                produced_at = time.monotonic()  # before the produce call: its own time counts too
                await produce(bootstrap, source_topic, [json.dumps(payload).encode()], key=b"t1:c1")

                (event,) = await c1.until(1)
                assert event.received_at - produced_at < 1.0
                assert event.event == "aforo.invoice.created"
                assert event.id is not None
                assert event.data == {
                    "type": "aforo.invoice.created",
                    "payload": {"invoiceId": "inv-1", "amountDue": 12000, "currency": "EUR"},
                    "version": "1",
                    "emittedAt": event.data["emittedAt"],
                    "source": "aforo-sse-gateway",
                }
                await asyncio.sleep(1.0)  # what else might arrive has had a second to do so
                assert c2.events == []
                assert other_tenant.events == []
                assert len(c1.events) == 1

                # An admin revokes c2's session (the API sets revokedAt): its stream ends within a sweep.
                await harness.mongo.collection(EMBED_SESSIONS.collection).update_many(
                    {"tenantId": "t1", "customerId": "c2"},
                    {"$set": {"revokedAt": datetime.now(UTC)}},
                )
                await c2.wait_ended(timeout=10)
                assert not c1.ended.is_set()
            assert await metric(session, gateway.url, "aforo_sse_events_fanned_out_total") >= 1
            assert await metric(session, gateway.url, "aforo_sse_disconnects_total", reason="revoked") == 1


async def test_last_event_id_replays_exactly_the_missed_events_also_after_a_restart(
    local_stack: LocalStack, service_log_dir: Path
) -> None:
    prefix = unique_prefix()
    bootstrap = local_stack.kafka_bootstrap
    async with gateway_under_test(local_stack, service_log_dir, prefix) as harness:
        tenant = await harness.seed("t1")
        gateway = await harness.start_gateway()
        topic = harness.widget_topic

        async def publish(*event_ids: str) -> None:
            await produce(
                bootstrap,
                topic,
                [widget_envelope(event_id, invoiceId=event_id) for event_id in event_ids],
                key=b"t1:c1",
            )

        async with aiohttp.ClientSession() as session:
            token = await exchange(session, gateway.url, tenant, "c1")
            async with open_stream(session, gateway.url, token) as first:
                await publish("e1", "e2")
                await first.until(2)
            await publish("e3", "e4", "e2")  # e2 re-published (at least once): not shown twice
            async with open_stream(session, gateway.url, token, last_event_id="e2") as resumed:
                await resumed.until(2)
                await publish("e5")
                await resumed.until(3)
                await asyncio.sleep(0.5)
                assert resumed.ids == ["e3", "e4", "e5"]

                # SIGTERM drains: the open stream is closed (so the client reconnects elsewhere), exit 0.
                code = await asyncio.to_thread(gateway.terminate, 30)
                assert code == 0
                await resumed.wait_ended(timeout=5)
            await publish("e6", "e7")  # while no replica is up

            # The restarted replica rebuilt its history from the topic: the missed events replay in order.
            restarted = await harness.start_gateway(port=gateway.port)
            async with open_stream(session, restarted.url, token, last_event_id="e5") as after_restart:
                await after_restart.until(2)
                await asyncio.sleep(0.5)
                assert after_restart.ids == ["e6", "e7"]
            async with open_stream(session, restarted.url, token, last_event_id="e1") as from_the_start:
                await from_the_start.until(6)
                assert from_the_start.ids == ["e2", "e3", "e4", "e5", "e6", "e7"]


async def test_every_replica_fans_out_every_event(local_stack: LocalStack, service_log_dir: Path) -> None:
    prefix = unique_prefix()
    async with gateway_under_test(local_stack, service_log_dir, prefix) as harness:
        tenant = await harness.seed("t1")
        replica_a, replica_b = await asyncio.gather(harness.start_gateway(), harness.start_gateway())
        async with aiohttp.ClientSession() as session:
            token_a = await exchange(session, replica_a.url, tenant, "c1")
            token_b = await exchange(session, replica_b.url, tenant, "c1")  # sessions work on any replica
            async with (
                open_stream(session, replica_a.url, token_a) as on_a,
                open_stream(session, replica_b.url, token_b) as on_b,
                open_stream(session, replica_a.url, token_b) as b_session_on_a,
            ):
                event_ids = [f"r{number}" for number in range(5)]
                await produce(
                    local_stack.kafka_bootstrap,
                    harness.widget_topic,
                    [widget_envelope(event_id) for event_id in event_ids],
                    key=b"t1:c1",
                )
                for stream in (on_a, on_b, b_session_on_a):
                    await stream.until(5)
                    assert stream.ids == event_ids


async def test_a_client_that_stops_reading_is_cut_off_while_memory_stays_flat(
    local_stack: LocalStack, service_log_dir: Path
) -> None:
    prefix = unique_prefix()
    async with gateway_under_test(
        local_stack, service_log_dir, prefix, AFORO_SSE_GATEWAY_CONNECTION_QUEUE_FRAMES="64"
    ) as harness:
        tenant = await harness.seed("t1")
        gateway = await harness.start_gateway()
        assert gateway.process is not None
        async with aiohttp.ClientSession() as session:
            token = await exchange(session, gateway.url, tenant, "c1")
            stalled = open_stalled_stream(gateway.port, token)
            try:
                async with open_stream(session, gateway.url, token) as healthy:
                    await asyncio.sleep(0.5)
                    rss_before = process_rss_bytes(gateway.process.pid)
                    events = 8_000  # ~26 MB for the stalled client, if the gateway kept it all
                    await produce(
                        local_stack.kafka_bootstrap,
                        harness.widget_topic,
                        [widget_envelope(f"big-{n}", **LARGEST_PAYLOAD) for n in range(events)],
                        key=b"t1:c1",
                    )
                    await healthy.until(events, timeout=60)
                    rss_after = process_rss_bytes(gateway.process.pid)
                assert await metric(session, gateway.url, "aforo_sse_slow_consumer_disconnects_total") == 1
                assert (
                    await metric(session, gateway.url, "aforo_sse_disconnects_total", reason="slow_consumer")
                    == 1
                )
                assert rss_after - rss_before < 20 * 1024 * 1024, (rss_before, rss_after)
                # The stalled client finds its stream cut once it reads what the socket buffers held.
                stalled.settimeout(10)
                received = 0
                while chunk := stalled.recv(65536):
                    received += len(chunk)
                assert received < events * FRAME_BYTES // 4
            finally:
                stalled.close()


async def test_closed_clients_free_their_slots_at_once_not_at_a_heartbeat(
    local_stack: LocalStack, service_log_dir: Path
) -> None:
    async with gateway_under_test(local_stack, service_log_dir, unique_prefix()) as harness:
        tenant = await harness.seed("t1")
        # Heartbeats 30 s apart: a slot freed within two seconds was not freed by a failed heartbeat.
        gateway = await harness.start_gateway(
            AFORO_SSE_GATEWAY_HEARTBEAT_SECONDS="30", AFORO_SSE_GATEWAY_MAX_CONNECTIONS_PER_STREAM="3"
        )
        async with aiohttp.ClientSession() as session:
            token = await exchange(session, gateway.url, tenant, "c1")
            async with contextlib.AsyncExitStack() as tabs:
                streams = [
                    await tabs.enter_async_context(open_stream(session, gateway.url, token)) for _ in range(3)
                ]
                assert await metric(session, gateway.url, "aforo_sse_open_connections") == 3
                async with session.get(
                    f"{gateway.url}/v1/embed/stream",
                    params={"access_token": token},
                    headers={"Origin": ORIGIN},
                ) as refused:
                    assert refused.status == 429
                for stream in streams:  # the tabs close
                    await stream.close()

            deadline = time.monotonic() + 2.0
            while await metric(session, gateway.url, "aforo_sse_open_connections") > 0:
                assert time.monotonic() < deadline, "closed streams still registered after 2 s"
                await asyncio.sleep(0.05)
            async with open_stream(session, gateway.url, token) as admitted:
                assert not admitted.ended.is_set()
            assert (
                await metric(session, gateway.url, "aforo_sse_disconnects_total", reason="client_gone") >= 3
            )


async def test_sigterm_ends_within_the_grace_even_with_a_stream_stuck_on_a_stalled_client(
    local_stack: LocalStack, service_log_dir: Path
) -> None:
    grace = 5.0
    async with gateway_under_test(local_stack, service_log_dir, unique_prefix()) as harness:
        tenant = await harness.seed("t1")
        # Queues that never cut the stalled client off: its handler stays blocked in a write.
        gateway = await harness.start_gateway(
            AFORO_SSE_GATEWAY_SHUTDOWN_GRACE_SECONDS=str(grace),
            AFORO_SSE_GATEWAY_CONNECTION_QUEUE_FRAMES="1000000",
            AFORO_SSE_GATEWAY_CONNECTION_QUEUE_BYTES="1000000000",
        )
        async with aiohttp.ClientSession() as session:
            token = await exchange(session, gateway.url, tenant, "c1")
            stalled = open_stalled_stream(gateway.port, token)
            try:
                async with open_stream(session, gateway.url, token) as healthy:
                    events = 3_000  # ~10 MB: more than any socket buffer between the two holds
                    await produce(
                        local_stack.kafka_bootstrap,
                        harness.widget_topic,
                        [widget_envelope(f"big-{n}", **LARGEST_PAYLOAD) for n in range(events)],
                        key=b"t1:c1",
                    )
                    await healthy.until(events, timeout=60)
                    assert (
                        await metric(session, gateway.url, "aforo_sse_slow_consumer_disconnects_total") == 0
                    )

                    began = time.monotonic()
                    code = await asyncio.to_thread(gateway.terminate, grace + 30)
                    took = time.monotonic() - began
                    await healthy.wait_ended(timeout=1)
                assert code == 0
                assert took < grace, f"SIGTERM took {took:.1f} s, over the {grace} s grace"
            finally:
                stalled.close()
