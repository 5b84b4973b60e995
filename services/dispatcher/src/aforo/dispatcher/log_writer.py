"""Delivery-log rows, and the delivery-state updates they go with, written to MongoDB in batches.

Rows are inserted in bulk; a row whose unique key (tenant, event, channel, endpoint, attempt) is
already there (a replayed Kafka record, a flush retried after an error, a PENDING row's outcome)
replaces it, so writing a row twice leaves one row. Inserting first keeps the common case cheap: a
bulk insert costs a fraction of a bulk upsert, which looks every row up before writing it. An attempt's outcome
settles its idempotency record in the same flush, after its row: a crash before the flush loses both
(the claim's lease expires and the attempt is taken over), never a settled state without its row.
The consumers flush before they commit offsets: a committed event always has its rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

from pymongo import ReplaceOne, UpdateOne
from pymongo.errors import BulkWriteError, PyMongoError

from aforo.dispatcher.delivery_log import UNIQUE_KEY_FIELDS, DeliveryLogRow
from aforo.shared.collections import DELIVERY_LOGS, DELIVERY_STATE
from aforo.shared.logging import get_logger
from aforo.shared.mongo import Document, MongoStore, bulk_insert_outcomes

log = get_logger(__name__)


def delivery_id_for(row: DeliveryLogRow) -> str:
    """A stable id per unique key, so the API can address a row (replay) and a rewrite keeps it."""
    tenant, event, channel, endpoint, attempt = row.unique_key
    return str(
        uuid.uuid5(uuid.NAMESPACE_URL, f"aforo-delivery:{tenant}/{event}/{channel}/{endpoint}/{attempt}")
    )


class DeliveryLogWriter:
    def __init__(self, mongo: MongoStore, batch_size: int, flush_interval_seconds: float) -> None:
        self._collection = mongo.collection(DELIVERY_LOGS.collection)
        self._state = mongo.collection(DELIVERY_STATE.collection)
        self._state_updates: list[UpdateOne] = []
        self._batch_size = batch_size
        self._interval = flush_interval_seconds
        self._pending: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def add(self, row: DeliveryLogRow, envelope: dict[str, Any]) -> None:
        document = row.to_document()
        document["deliveryId"] = delivery_id_for(row)
        document["envelope"] = envelope  # what a replay re-sends (same eventId, same bytes)
        self._pending[row.unique_key] = document

    def add_state_update(self, update: UpdateOne) -> None:
        """Settle an idempotency record with the next flush, after the rows added before it."""
        self._state_updates.append(update)

    async def flush(self) -> None:
        """Write what is buffered; on a database error keep it and raise (the caller must not commit)."""
        async with self._lock:
            if not self._pending and not self._state_updates:
                return
            batch, state_updates = self._pending, self._state_updates
            self._pending, self._state_updates = {}, []
            documents = list(batch.values())
            try:
                for start in range(0, len(documents), self._batch_size):
                    await self._write_rows(documents[start : start + self._batch_size])
                if state_updates:
                    await self._state.bulk_write(state_updates, ordered=False)
            except BaseException:
                # Not written (a database error, or cancelled by a drain deadline): keep it for the
                # next flush; never drop rows whose deliveries already happened.
                for key, document in batch.items():
                    self._pending.setdefault(key, document)
                self._state_updates = state_updates + self._state_updates
                raise

    async def _write_rows(self, documents: list[Document]) -> None:
        """Insert the rows; those whose key is already stored replace the stored row instead."""
        try:
            # Copies: the driver adds an `_id` to what it inserts, and a kept row must stay without one.
            await self._collection.insert_many([dict(document) for document in documents], ordered=False)
            return
        except BulkWriteError as error:
            outcomes = bulk_insert_outcomes(len(documents), error.details.get("writeErrors") or [])
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                raise outcome
        rewrites = [
            ReplaceOne({key: document[key] for key in UNIQUE_KEY_FIELDS}, document, upsert=True)
            for document, inserted in zip(documents, outcomes, strict=True)
            if inserted is False
        ]
        await self._collection.bulk_write(rewrites, ordered=False)

    def start(self) -> None:
        self._task = asyncio.create_task(self._flush_periodically(), name="delivery-log-flush")

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.flush()
            except PyMongoError as error:
                log.warning("delivery_log_flush_failed", error=repr(error))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
