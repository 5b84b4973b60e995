"""The batched lookup: one loop turn's callers share queries, a query stays inside one scope (a tenant)
and holds each key once, and every caller gets its own answer, or its own batch's error."""

from __future__ import annotations

import asyncio

import pytest

from aforo.shared.batched_lookup import BatchedLookup

STORED = {("t-a", "k1"): "a1", ("t-a", "k2"): "a2", ("t-b", "k1"): "b1"}


class Store:
    """Answers queries from `STORED`, recording each (scope, keys); fails the scopes in `failing`."""

    def __init__(self, failing: frozenset[str] = frozenset()) -> None:
        self.queries: list[tuple[str, list[str]]] = []
        self.failing = failing

    async def fetch(self, scope: str, keys: list[str]) -> dict[str, str]:
        self.queries.append((scope, keys))
        await asyncio.sleep(0)
        if scope in self.failing:
            raise ConnectionError(f"database down for {scope}")
        return {key: STORED[(scope, key)] for key in keys if (scope, key) in STORED}


async def test_callers_of_one_turn_share_one_query_per_scope_and_each_gets_its_own_answer() -> None:
    store = Store()
    lookup: BatchedLookup[str, str, str] = BatchedLookup(store.fetch)
    asked = [("t-a", "k1"), ("t-b", "k1"), ("t-a", "k2"), ("t-a", "k1"), ("t-b", "k2"), ("t-c", "k1")]
    answers = await asyncio.gather(*(lookup.get(scope, key) for scope, key in asked))
    assert answers == ["a1", "b1", "a2", "a1", None, None]
    # One query per scope, each key once, never another scope's key.
    assert sorted(store.queries) == [("t-a", ["k1", "k2"]), ("t-b", ["k1", "k2"]), ("t-c", ["k1"])]


async def test_queries_hold_at_most_max_batch_callers() -> None:
    store = Store()
    lookup: BatchedLookup[str, str, str] = BatchedLookup(store.fetch, max_batch=3)
    answers = await asyncio.gather(*(lookup.get("t-a", f"k{n}") for n in range(8)))
    assert answers == [None, "a1", "a2", None, None, None, None, None]
    assert [len(keys) for _, keys in store.queries] == [3, 3, 2]


async def test_a_lone_lookup_and_the_next_turns_lookups_are_answered() -> None:
    store = Store()
    lookup: BatchedLookup[str, str, str] = BatchedLookup(store.fetch)
    assert await lookup.get("t-a", "k2") == "a2"
    assert await lookup.get("t-b", "k1") == "b1"
    assert store.queries == [("t-a", ["k2"]), ("t-b", ["k1"])]


async def test_a_failed_query_fails_only_its_own_callers() -> None:
    store = Store(failing=frozenset({"t-b"}))
    lookup: BatchedLookup[str, str, str] = BatchedLookup(store.fetch)
    ok, failed = await asyncio.gather(
        lookup.get("t-a", "k1"), lookup.get("t-b", "k1"), return_exceptions=True
    )
    assert ok == "a1"
    assert isinstance(failed, ConnectionError)
    store.failing = frozenset()
    assert await lookup.get("t-b", "k1") == "b1"


async def test_a_caller_that_goes_away_does_not_disturb_the_others() -> None:
    store = Store()
    lookup: BatchedLookup[str, str, str] = BatchedLookup(store.fetch)
    leaving = asyncio.ensure_future(lookup.get("t-a", "k1"))
    staying = asyncio.ensure_future(lookup.get("t-a", "k2"))
    await asyncio.sleep(0)  # both are waiting for the shared query
    leaving.cancel()
    assert await staying == "a2"
    assert leaving.cancelled()


def test_a_batch_size_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        BatchedLookup(Store().fetch, max_batch=0)
