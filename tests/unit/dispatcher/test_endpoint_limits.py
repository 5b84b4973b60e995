"""Per-endpoint limits in the dispatcher: concurrency per endpoint, deferral past the backlog, and no
limiter kept for an endpoint once its attempts are done. Sends are held by a gate of the fake sender."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from aforo.dispatcher.dispatch import AttemptJob
from aforo.dispatcher.endpoint_limits import EndpointLimits
from tests.support.fakes import DispatcherWorld, dispatcher_world, invoice_envelope


def job(endpoint_id: str, number: int) -> AttemptJob:
    envelope = invoice_envelope(f"evt-{endpoint_id}-{number}")
    return AttemptJob(envelope, envelope.to_json_bytes(), endpoint_id, 1)


def held_world(**settings: int) -> DispatcherWorld:
    world = dispatcher_world(**settings)
    world.sender.gate = asyncio.Event()
    return world


async def test_each_endpoint_runs_at_most_its_concurrency_and_others_are_not_held_up() -> None:
    world = held_world(per_endpoint_concurrency=2, per_endpoint_backlog=100)
    attempts = [asyncio.create_task(world.dispatcher.run_attempt(job("slow", n))) for n in range(10)]
    attempts += [asyncio.create_task(world.dispatcher.run_attempt(job("other", n))) for n in range(2)]
    await asyncio.sleep(0.01)
    assert Counter(endpoint for _, endpoint, _ in world.sender.sends) == {"slow": 2, "other": 2}
    assert world.sender.gate is not None
    world.sender.gate.set()
    await asyncio.gather(*attempts)
    assert len(world.sender.sends) == 12


async def test_attempts_past_the_backlog_are_parked_not_queued() -> None:
    world = held_world(per_endpoint_concurrency=1, per_endpoint_backlog=3)
    attempts = [asyncio.create_task(world.dispatcher.run_attempt(job("slow", n))) for n in range(10)]
    await asyncio.sleep(0.01)
    # One running, three waiting; the other six went to the delay topic, unattempted.
    assert [(p.endpoint_id, p.attempt) for p in world.parked()] == [("slow", 1)] * 6
    assert world.sender.gate is not None
    world.sender.gate.set()
    await asyncio.gather(*attempts)
    assert len(world.sender.sends) == 4


async def test_no_limiter_is_kept_for_an_endpoint_without_attempts() -> None:
    world = dispatcher_world(per_endpoint_concurrency=2)
    await asyncio.gather(*(world.dispatcher.run_attempt(job(f"endpoint-{n}", n)) for n in range(1000)))
    assert world.dispatcher.limits.tracked() == 0


async def test_a_cancelled_waiting_attempt_leaves_no_limiter_behind() -> None:
    limits = EndpointLimits(per_endpoint_concurrency=1, per_endpoint_backlog=10)
    release = asyncio.Event()

    async def hold() -> None:
        async with limits.slot("e"):
            await release.wait()

    running = asyncio.create_task(hold())
    waiting = asyncio.create_task(hold())
    await asyncio.sleep(0.01)
    assert limits.saturated("e") is False
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    release.set()
    await running
    assert limits.tracked() == 0
