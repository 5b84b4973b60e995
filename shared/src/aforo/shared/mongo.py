"""The one MongoDB helper, on PyMongo's async API (`AsyncMongoClient`; Motor is end-of-life).

Collections and their indexes are declared once in `aforo.shared.collections`; each service names the
ones it uses and `MongoStore.start` creates their indexes (idempotent, safe on every start).
Only features MongoDB 7 has are used: locally the suite runs against SecantusDB, a wire-compatible server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from pymongo import AsyncMongoClient, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure, PyMongoError

from aforo.shared.batched_lookup import DEFAULT_MAX_BATCH, BatchedLookup

Document = dict[str, Any]
DUPLICATE_KEY: Final = 11000


@dataclass(frozen=True)
class CollectionIndexes:
    """A collection and the indexes its queries need."""

    collection: str
    indexes: tuple[IndexModel, ...]
    retired: tuple[str, ...] = ()
    """Names of indexes earlier versions created and no query needs any more: dropped at start, so an
    upgraded database stops paying for them on every write."""


class MongoStore:
    """Owns the client for one service; hands out collections of the configured database."""

    def __init__(self, uri: str, database: str, *, app_name: str, timeout_ms: int = 5_000) -> None:
        self.client: AsyncMongoClient[Document] = AsyncMongoClient(
            uri,
            appname=app_name,
            serverSelectionTimeoutMS=timeout_ms,
            connectTimeoutMS=timeout_ms,
            tz_aware=True,
        )
        self.database: AsyncDatabase[Document] = self.client[database]

    def collection(self, name: str) -> AsyncCollection[Document]:
        return self.database[name]

    async def start(self, collections: Iterable[CollectionIndexes] = ()) -> None:
        """Connect and create the indexes of the given collections."""
        await self.client.aconnect()
        for spec in collections:
            collection = self.database[spec.collection]
            for name in spec.retired:
                await drop_index_if_present(collection, name)
            if spec.indexes:
                await collection.create_indexes(list(spec.indexes))

    async def answers(self, timeout_seconds: float) -> bool:
        """Readiness: the server answers `ping` within the timeout."""
        try:
            await asyncio.wait_for(self.client.admin.command("ping"), timeout_seconds)
        except (TimeoutError, PyMongoError):
            return False
        return True

    async def close(self) -> None:
        await self.client.close()


INDEX_NOT_FOUND: Final = 27


async def drop_index_if_present(collection: AsyncCollection[Document], name: str) -> None:
    """Drop an index that may not be there (never created, or dropped by another service first)."""
    try:
        await collection.drop_index(name)
    except OperationFailure as error:
        if error.code != INDEX_NOT_FOUND:
            raise


def bulk_insert_outcomes(count: int, write_errors: Sequence[Document]) -> list[bool | Exception]:
    """Per document of an unordered bulk insert: inserted, a duplicate key (False), or its error."""
    outcomes: list[bool | Exception] = [True] * count
    for write_error in write_errors:
        code = write_error.get("code")
        outcomes[int(write_error["index"])] = (
            False
            if code == DUPLICATE_KEY
            else OperationFailure(str(write_error.get("errmsg", "insert failed")), code, write_error)
        )
    return outcomes


class ExistenceBatcher:
    """Answers "is a document with this `_id` stored?" for many concurrent callers with shared
    `find({_id: {$in: [...]}})` queries (a `BatchedLookup`: the callers of one event-loop turn share them).

    Why: the dispatcher asks it once per delivery (has this attempt already happened?); batched, the
    question costs a fraction of a round trip per delivery, and no timer adds latency when idle.
    """

    def __init__(self, collection: AsyncCollection[Document], max_batch: int = DEFAULT_MAX_BATCH) -> None:
        async def stored(_: None, ids: list[Any]) -> dict[Any, bool]:
            return {
                document["_id"]: True async for document in collection.find({"_id": {"$in": ids}}, {"_id": 1})
            }

        self._lookup: BatchedLookup[None, Any, bool] = BatchedLookup(stored, max_batch)

    async def exists(self, document_id: Any) -> bool:
        return await self._lookup.get(None, document_id) is not None
