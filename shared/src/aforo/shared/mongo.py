"""The one MongoDB helper, on PyMongo's async API (`AsyncMongoClient`; Motor is end-of-life).

Collections and their indexes are declared once in `aforo.shared.collections`; each service names the
ones it uses and `MongoStore.start` creates their indexes (idempotent, safe on every start).
Only features MongoDB 7 has are used: locally the suite runs against SecantusDB, a wire-compatible server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pymongo import AsyncMongoClient, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

Document = dict[str, Any]


@dataclass(frozen=True)
class CollectionIndexes:
    """A collection and the indexes its queries need."""

    collection: str
    indexes: tuple[IndexModel, ...]


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
            if spec.indexes:
                await self.database[spec.collection].create_indexes(list(spec.indexes))

    async def answers(self, timeout_seconds: float) -> bool:
        """Readiness: the server answers `ping` within the timeout."""
        try:
            await asyncio.wait_for(self.client.admin.command("ping"), timeout_seconds)
        except (TimeoutError, PyMongoError):
            return False
        return True

    async def close(self) -> None:
        await self.client.close()
