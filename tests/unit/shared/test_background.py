"""Background loops: a loop that dies is reported and makes the service not alive; cancel awaits."""

from __future__ import annotations

import asyncio

import pytest

from aforo.shared.background import BackgroundTasks


async def forever(ticks: list[int]) -> None:
    while True:
        ticks.append(1)
        await asyncio.sleep(0.001)


async def dies() -> None:
    await asyncio.sleep(0.001)
    raise RuntimeError("boom")


async def test_a_loop_that_dies_makes_the_owner_not_alive() -> None:
    tasks = BackgroundTasks("test")
    tasks.spawn("fine", forever([]))
    tasks.spawn("bad", dies())
    assert tasks.alive()
    await asyncio.sleep(0.02)
    assert not tasks.alive()
    assert tasks.dead() == ["bad"]
    await tasks.cancel_all()


async def test_cancel_all_waits_for_every_loop_to_end() -> None:
    tasks = BackgroundTasks("test")
    ticks: list[int] = []
    task = tasks.spawn("loop", forever(ticks))
    await asyncio.sleep(0.01)
    await tasks.cancel_all()
    assert task.done()
    count = len(ticks)
    await asyncio.sleep(0.01)
    assert len(ticks) == count  # nothing runs after cancel_all returned
    assert tasks.alive()  # stopping: not a death


async def test_one_loop_per_name() -> None:
    tasks = BackgroundTasks("test")
    tasks.spawn("loop", forever([]))
    with pytest.raises(RuntimeError, match="already running"):
        tasks.spawn("loop", forever([]))
    await tasks.cancel_all()


async def test_a_loop_awaited_to_its_end_is_not_reported_dead() -> None:
    tasks = BackgroundTasks("test")

    async def finite() -> None:
        await asyncio.sleep(0.001)

    tasks.spawn("drain-me", finite())
    await tasks.wait("drain-me")
    assert tasks.alive()
    assert tasks.dead() == []
