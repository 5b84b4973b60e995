"""The shared TTL cache: one load per key however many callers miss at once."""

from __future__ import annotations

import asyncio

import pytest

from aforo.shared.ttl_cache import MISSING, TtlCache


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


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def answer(value: object) -> object:
    return value


def tenant(key: tuple[str, ...]) -> str:
    return key[1] if len(key) > 1 else ""


async def test_a_vouched_answer_outlives_the_ttl_and_an_unvouched_one_does_not() -> None:
    clock = Clock()
    cache = TtlCache(ttl=1, clock=clock)
    vouched_since = [clock.now + 0.5]
    cache.trust_while(lambda began: began >= vouched_since[0], ttl=60, group_of=tenant)
    await cache.get_or_load(("endpoints", "t1", "before"), lambda: answer("early"))
    clock.now += 1
    await cache.get_or_load(("endpoints", "t1", "after"), lambda: answer("late"))
    clock.now += 30
    # Loaded before the voucher began: its own TTL only. Loaded after: kept for the vouched TTL.
    assert cache.fresh(("endpoints", "t1", "before")) is MISSING
    assert cache.fresh(("endpoints", "t1", "after")) == "late"
    clock.now += 31
    assert cache.fresh(("endpoints", "t1", "after")) is MISSING


async def test_an_answer_is_vouched_for_only_while_the_voucher_holds() -> None:
    clock = Clock()
    cache = TtlCache(ttl=1, clock=clock)
    current = [True]
    cache.trust_while(lambda began: current[0], ttl=60, group_of=tenant)
    await cache.get_or_load(("k",), lambda: answer("kept"))
    clock.now += 10
    assert cache.fresh(("k",)) == "kept"
    current[0] = False  # the feed fell behind: the cache's own TTL applies again
    assert cache.fresh(("k",)) is MISSING
    current[0] = True
    assert cache.fresh(("k",)) == "kept"


async def test_fresh_tells_a_remembered_none_from_a_miss() -> None:
    cache = TtlCache(ttl=60)
    assert cache.fresh(("k",)) is MISSING
    await cache.get_or_load(("k",), lambda: answer(None))
    assert cache.fresh(("k",)) is None


@pytest.mark.parametrize("by", ["group", "predicate"])
async def test_a_drop_forgets_one_tenants_answers_and_loads_only(by: str) -> None:
    cache = TtlCache(ttl=60)
    cache.trust_while(lambda began: True, ttl=60, group_of=tenant)
    for key in (("endpoint", "t1", "e1"), ("preference", "t1", "c1", "X"), ("endpoint", "t2", "e1")):
        await cache.get_or_load(key, lambda: answer("stored"))
    stale = CountingLoader(value="loaded before the change")
    pending = asyncio.create_task(cache.get_or_load(("endpoints", "t1", "c1"), stale))
    await asyncio.sleep(0)
    if by == "group":
        cache.drop_group("t1")
    else:
        cache.drop_where(lambda key: key[1] == "t1")
    stale.release.set()
    await pending
    assert cache.fresh(("endpoint", "t1", "e1")) is MISSING
    assert cache.fresh(("preference", "t1", "c1", "X")) is MISSING
    assert cache.fresh(("endpoints", "t1", "c1")) is MISSING
    assert cache.fresh(("endpoint", "t2", "e1")) == "stored"
    await cache.get_or_load(("endpoint", "t1", "e1"), lambda: answer("reloaded"))
    cache.drop_group("t1")  # a key stored again belongs to its group again
    assert cache.fresh(("endpoint", "t1", "e1")) is MISSING


async def test_a_full_cache_forgets_the_expired_then_its_oldest_answers() -> None:
    clock = Clock()
    cache = TtlCache(ttl=1, max_entries=20, clock=clock)
    cache.trust_while(lambda began: True, ttl=60, group_of=tenant)
    for number in range(10):
        await cache.get_or_load(("k", f"t{number}"), lambda: answer("old"))
    clock.now += 61  # past even the vouched TTL
    for number in range(10, 20):
        await cache.get_or_load(("k", f"t{number}"), lambda: answer("young"))
    await cache.get_or_load(("k", "t20"), lambda: answer("young"))
    assert len(cache) == 11  # the ten expired ones made room; nothing young was forgotten
    for number in range(21, 30):
        await cache.get_or_load(("k", f"t{number}"), lambda: answer("young"))
    await cache.get_or_load(("k", "t30"), lambda: answer("young"))
    # Full of answers still good: the oldest tenth (two) goes, the rest stays.
    assert cache.fresh(("k", "t10")) is MISSING
    assert cache.fresh(("k", "t11")) is MISSING
    assert cache.fresh(("k", "t12")) == "young"
    assert cache.fresh(("k", "t30")) == "young"
    cache.drop_group("t11")  # the groups follow what was forgotten
    cache.drop_group("t12")
    assert cache.fresh(("k", "t12")) is MISSING


async def test_the_own_ttl_counts_from_when_an_answer_was_stored() -> None:
    clock = Clock()
    cache = TtlCache(ttl=1, clock=clock)

    async def slow() -> object:
        clock.now += 2  # the database took 2 s to answer
        return "slow answer"

    await cache.get_or_load(("k",), slow)
    assert cache.fresh(("k",)) == "slow answer"


async def test_clear_forgets_everything() -> None:
    cache = TtlCache(ttl=60)
    cache.trust_while(lambda began: True, ttl=60, group_of=tenant)
    await cache.get_or_load(("endpoint", "t1", "e1"), lambda: answer("stored"))
    cache.clear()
    assert cache.fresh(("endpoint", "t1", "e1")) is MISSING
    assert len(cache) == 0
