"""The existence batcher shares queries among the callers of one loop turn, 32 ids a query at most."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from aforo.shared.mongo import ExistenceBatcher


class FakeCollection:
    def __init__(self, stored: set[str], fail: bool = False) -> None:
        self.stored = stored
        self.queries: list[list[str]] = []
        self.fail = fail

    def find(self, query: dict[str, Any], projection: dict[str, int]) -> AsyncIterator[dict[str, Any]]:
        ids = query["_id"]["$in"]
        self.queries.append(ids)

        async def results() -> AsyncIterator[dict[str, Any]]:
            await asyncio.sleep(0)
            if self.fail:
                raise ConnectionError("database down")
            for document_id in ids:
                if document_id in self.stored:
                    yield {"_id": document_id}

        return results()


async def test_one_turns_callers_share_queries_of_at_most_32_ids() -> None:
    collection = FakeCollection({f"id-{n}" for n in range(0, 100, 2)})
    batcher = ExistenceBatcher(collection)  # type: ignore[arg-type]
    answers = await asyncio.gather(*(batcher.exists(f"id-{n}") for n in range(100)))
    assert answers == [n % 2 == 0 for n in range(100)]
    assert [len(ids) for ids in collection.queries] == [32, 32, 32, 4]


async def test_a_failed_query_fails_its_callers_and_the_next_ones_still_ask() -> None:
    collection = FakeCollection({"a"}, fail=True)
    batcher = ExistenceBatcher(collection)  # type: ignore[arg-type]
    with pytest.raises(ConnectionError):
        await batcher.exists("a")
    collection.fail = False
    assert await batcher.exists("a") is True
