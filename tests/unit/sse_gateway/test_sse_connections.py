"""Streams' bounded queues and routing, admission caps, and which streams a revocation sweep ends."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from aforo.sse_gateway.admission import Capacity, Refusal, admit
from aforo.sse_gateway.connections import (
    HEARTBEAT,
    CloseReason,
    Connection,
    ConnectionRegistry,
    StreamGrant,
    heartbeat_shards,
)
from aforo.sse_gateway.revocation import streams_to_close

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=1)


def grant(tenant: str = "t1", customer: str = "c1", session: str = "es_1", key: str = "ek_1") -> StreamGrant:
    return StreamGrant(tenant, customer, session, key, session_ends_at=LATER)


class Aborts:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def connection(queue_frames: int = 3, **grant_fields: str) -> tuple[Connection, Aborts]:
    aborts = Aborts()
    return Connection(grant(**grant_fields), queue_frames=queue_frames, abort=aborts), aborts


async def test_queued_frames_are_taken_together_in_order() -> None:
    stream, _ = connection()
    assert stream.offer(b"a")
    assert stream.offer(b"b")

    assert await stream.take() == b"ab"
    assert stream.queued == 0


async def test_a_stream_idle_for_a_whole_tick_gets_a_heartbeat() -> None:
    stream, _ = connection()
    stream.tick()  # the first interval: the stream had just opened (its first bytes went out)
    waiting = asyncio.create_task(stream.take())
    await asyncio.sleep(0)
    assert not waiting.done()

    stream.tick()  # a whole interval without a frame

    assert await asyncio.wait_for(waiting, 1.0) == HEARTBEAT
    assert stream.closed is None


async def test_a_stream_that_sent_frames_gets_no_heartbeat_that_interval() -> None:
    registry = ConnectionRegistry()
    stream, _ = connection()
    registry.add(stream)
    registry.tick()
    stream.offer(b"event")
    assert await stream.take() == b"event"

    registry.tick()  # it sent something in this interval

    waiting = asyncio.create_task(stream.take())
    await asyncio.sleep(0)
    assert not waiting.done()
    registry.tick()
    assert await asyncio.wait_for(waiting, 1.0) == HEARTBEAT


@pytest.mark.parametrize(
    ("heartbeat_seconds", "shards"), [(15.0, 150), (1.0, 10), (0.2, 2), (0.01, 1), (86_400.0, 3_600)]
)
def test_heartbeats_are_spread_over_the_interval_one_small_shard_per_tick(
    heartbeat_seconds: float, shards: int
) -> None:
    assert heartbeat_shards(heartbeat_seconds) == shards


async def test_each_tick_visits_one_shard_and_every_stream_is_in_one() -> None:
    registry = ConnectionRegistry(heartbeat_shards=3)
    streams = [connection(customer=f"c{index}")[0] for index in range(7)]
    for stream in streams:
        registry.add(stream)
    registry.remove(streams[4])
    for shard in range(3):
        registry.tick(shard)  # the first interval: every stream had just opened
    waiting = {stream: asyncio.create_task(stream.take()) for stream in streams if stream is not streams[4]}
    await asyncio.sleep(0)

    registry.tick(0)  # one shard's streams get their heartbeat; the others wait for their own tick
    await asyncio.sleep(0)
    woken = {stream for stream, task in waiting.items() if task.done()}
    assert woken == {stream for stream in waiting if stream.shard == 0}
    assert woken

    registry.tick(1)
    registry.tick(2)
    assert await asyncio.wait_for(asyncio.gather(*waiting.values()), 1.0) == [HEARTBEAT] * 6
    for task in waiting.values():
        task.cancel()


async def test_a_waiting_take_wakes_on_offer() -> None:
    stream, _ = connection()
    waiting = asyncio.create_task(stream.take())
    await asyncio.sleep(0)

    stream.offer(b"x")

    assert await waiting == b"x"


async def test_a_full_queue_cuts_the_slow_client_off_and_aborts_its_transport() -> None:
    stream, aborts = connection(queue_frames=2)
    assert stream.offer(b"1")
    assert stream.offer(b"2")

    assert stream.offer(b"3") is False

    assert stream.closed is CloseReason.SLOW_CONSUMER
    assert aborts.count == 1
    assert stream.queued == 0  # its frames are released at once
    assert await stream.take() == b""
    assert stream.offer(b"4") is False


async def test_other_closes_do_not_abort_and_the_first_reason_counts() -> None:
    stream, aborts = connection()

    stream.close(CloseReason.DRAINING)
    stream.close(CloseReason.SLOW_CONSUMER)

    assert stream.closed is CloseReason.DRAINING
    assert aborts.count == 0


async def test_publish_reaches_exactly_that_customers_streams() -> None:
    registry = ConnectionRegistry()
    mine_1, _ = connection(customer="c1", session="s1")
    mine_2, _ = connection(customer="c1", session="s2")
    other_customer, _ = connection(customer="c2")
    other_tenant, _ = connection(tenant="t2", customer="c1")
    for stream in (mine_1, mine_2, other_customer, other_tenant):
        registry.add(stream)

    assert registry.publish(("t1", "c1"), "aforo.invoice.created", b"f") == 2

    assert (mine_1.queued, mine_2.queued, other_customer.queued, other_tenant.queued) == (1, 1, 0, 0)
    assert registry.publish(("t3", "c1"), "aforo.invoice.created", b"f") == 0
    assert registry.count_for(("t1", "c1")) == 2
    assert len(registry) == 4


async def test_one_slow_stream_does_not_hold_back_the_others() -> None:
    registry = ConnectionRegistry()
    slow, slow_aborts = connection(queue_frames=1, session="slow")
    fast, _ = connection(queue_frames=10, session="fast")
    registry.add(slow)
    registry.add(fast)

    delivered = [registry.publish(("t1", "c1"), "aforo.invoice.created", bytes([n])) for n in range(3)]

    assert delivered == [2, 1, 1]
    assert slow.closed is CloseReason.SLOW_CONSUMER
    assert slow_aborts.count == 1
    assert await fast.take() == bytes([0, 1, 2])


async def test_close_all_then_every_handler_leaving_empties_the_registry() -> None:
    registry = ConnectionRegistry()
    streams = [connection(session=f"s{n}")[0] for n in range(3)]
    for stream in streams:
        registry.add(stream)

    assert registry.close_all(CloseReason.DRAINING) == 3
    assert all(stream.closed is CloseReason.DRAINING for stream in streams)
    waiting = asyncio.create_task(registry.wait_empty())
    for stream in streams:
        registry.remove(stream)
        registry.remove(stream)  # a second remove is harmless

    await asyncio.wait_for(waiting, 1.0)
    assert len(registry) == 0


CAPACITY = Capacity(max_connections=10, max_connections_per_stream=2)


@pytest.mark.parametrize(
    ("open_total", "open_for_stream", "draining", "ready", "refusal"),
    [
        (0, 0, False, True, None),
        (9, 1, False, True, None),
        (10, 0, False, True, Refusal.PROCESS_FULL),
        (5, 2, False, True, Refusal.STREAM_FULL),
        (10, 2, False, True, Refusal.PROCESS_FULL),
        (0, 0, True, True, Refusal.DRAINING),
        (0, 0, False, False, Refusal.NOT_READY),
        (0, 0, True, False, Refusal.DRAINING),
    ],
)
def test_admission(
    open_total: int, open_for_stream: int, draining: bool, ready: bool, refusal: Refusal | None
) -> None:
    assert (
        admit(
            CAPACITY, open_total=open_total, open_for_stream=open_for_stream, draining=draining, ready=ready
        )
        is refusal
    )


ENDED = StreamGrant("t1", "c9", "es_old", "ek_1", session_ends_at=NOW)


@pytest.mark.parametrize(
    ("revoked_sessions", "revoked_keys", "expected"),
    [
        (set(), set(), [(ENDED, CloseReason.SESSION_ENDED)]),
        ({("t1", "es_1")}, set(), [(grant(), CloseReason.REVOKED), (ENDED, CloseReason.SESSION_ENDED)]),
        (set(), {("t1", "ek_1")}, [(grant(), CloseReason.REVOKED), (ENDED, CloseReason.REVOKED)]),
        # Ids are unique within a tenant only: another tenant's revocation of the same ids ends nothing.
        ({("t2", "es_1")}, {("t2", "ek_1")}, [(ENDED, CloseReason.SESSION_ENDED)]),
    ],
)
def test_which_streams_a_sweep_ends(
    revoked_sessions: set[tuple[str, str]],
    revoked_keys: set[tuple[str, str]],
    expected: list[tuple[StreamGrant, CloseReason]],
) -> None:
    grants = [grant(), grant(customer="c2", session="es_2", key="ek_2"), ENDED]

    assert (
        streams_to_close(
            grants,
            revoked_sessions=frozenset(revoked_sessions),
            revoked_embed_keys=frozenset(revoked_keys),
            now=NOW,
        )
        == expected
    )
