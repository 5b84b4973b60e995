"""The shared TTL cache: one load per key however many callers miss at once."""

from __future__ import annotations

import asyncio

import pytest

from aforo.shared.ttl_cache import TtlCache


class CountingLoader:
    def __init__(self, value: object = "answer", fail: bool = False) -> None:
        self.calls = 0
        self.value = value
        self.fail = fail
        self.release = asyncio.Event()

    async def __call__(self) -> object:
        self.calls += 1
        await self.release.wait()
        if self.fail:
            raise RuntimeError("database down")
        return self.value


async def test_concurrent_misses_share_one_load_and_the_answer_is_remembered() -> None:
    cache = TtlCache(ttl=60)
    load = CountingLoader()
    waiters = [asyncio.create_task(cache.get_or_load(("endpoints", "t1", "c1"), load)) for _ in range(500)]
    await asyncio.sleep(0)
    load.release.set()
    assert await asyncio.gather(*waiters) == ["answer"] * 500
    assert await cache.get_or_load(("endpoints", "t1", "c1"), load) == "answer"
    assert load.calls == 1


async def test_a_none_answer_is_remembered_too() -> None:
    cache = TtlCache(ttl=60)
    load = CountingLoader(value=None)
    load.release.set()
    assert await cache.get_or_load(("preference", "t1"), load) is None
    assert await cache.get_or_load(("preference", "t1"), load) is None
    assert load.calls == 1


async def test_a_failed_load_reaches_every_waiter_and_is_not_remembered() -> None:
    cache = TtlCache(ttl=60)
    failing = CountingLoader(fail=True)
    waiters = [asyncio.create_task(cache.get_or_load(("k",), failing)) for _ in range(3)]
    await asyncio.sleep(0)
    failing.release.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(result, RuntimeError) for result in results)
    healthy = CountingLoader()
    healthy.release.set()
    assert await cache.get_or_load(("k",), healthy) == "answer"


async def test_one_cancelled_caller_does_not_cancel_the_shared_load() -> None:
    cache = TtlCache(ttl=60)
    load = CountingLoader()
    first = asyncio.create_task(cache.get_or_load(("k",), load))
    second = asyncio.create_task(cache.get_or_load(("k",), load))
    await asyncio.sleep(0)
    first.cancel()
    load.release.set()
    assert await second == "answer"
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_an_answer_loading_while_dropped_is_not_remembered() -> None:
    cache = TtlCache(ttl=60)
    stale = CountingLoader(value="before the change")
    pending = asyncio.create_task(cache.get_or_load(("endpoint", "t1", "e1"), stale))
    await asyncio.sleep(0)
    cache.drop(("endpoint", "t1"))
    stale.release.set()
    assert await pending == "before the change"
    fresh = CountingLoader(value="after the change")
    fresh.release.set()
    assert await cache.get_or_load(("endpoint", "t1", "e1"), fresh) == "after the change"


async def test_answers_expire_after_the_ttl() -> None:
    cache = TtlCache(ttl=0.05)
    load = CountingLoader()
    load.release.set()
    await cache.get_or_load(("k",), load)
    await asyncio.sleep(0.1)
    await cache.get_or_load(("k",), load)
    assert load.calls == 2
