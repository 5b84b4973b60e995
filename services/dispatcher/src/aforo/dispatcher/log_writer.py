"""Delivery-log rows, and the delivery-state updates they go with, written to MongoDB in batches.

Rows are inserted in bulk; a row whose `_id` (derived from its unique key: tenant, event, channel,
endpoint, attempt) is already there (a replayed Kafka record, a flush retried after an error, a
PENDING row's outcome) replaces it, so writing a row twice leaves one row. Inserting first keeps the common case cheap: a
bulk insert costs a fraction of a bulk upsert, which looks every row up before writing it. An attempt's outcome
updates the state of a retried delivery in the same flush, after its row: a crash before the flush
loses both (the record is read again and the attempt made again), never a state without its row.
The consumers flush before they commit offsets: a committed event always has its rows. Each batch of
rows is preceded by its audit-trail pages (`aforo.shared.audit_trail`): a stored row is always listed.

A row keeps the envelope it delivered as its exact JSON text (`envelopeJson`), never as a nested
document: payloads are the producers' bytes verbatim, and valid JSON holds what BSON cannot (integers
beyond 64 bits, keys with NUL, `$` or `.`, nesting deeper than MongoDB's limit). A row the database
still refuses is dead-lettered with its reason (`reject`) and the rest of its batch is written: one
hostile payload never holds up another tenant's audit trail or the offsets behind it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import bson
from bson.errors import BSONError
from pymongo import ReplaceOne, UpdateOne
from pymongo.errors import BulkWriteError, PyMongoError

from aforo.dispatcher.delivery_log import AttemptKey, DeliveryLogRow, row_document
from aforo.dispatcher.metrics import LOG_ROW_WAIT_SECONDS, UNSTORABLE_ROWS
from aforo.dispatcher.partition_marks import PartitionMarkKeeper
from aforo.shared.audit_trail import page_documents
from aforo.shared.background import BackgroundTasks
from aforo.shared.collections import DELIVERY_LOG_PAGES, DELIVERY_LOGS, DELIVERY_STATE
from aforo.shared.delivery import Channel
from aforo.shared.logging import get_logger
from aforo.shared.mongo import Document, MongoStore, bulk_insert_outcomes

log = get_logger(__name__)


UnstorableRowHandler = Callable[[Document, str], Awaitable[None]]
"""Takes a row the database refused and why (the dispatcher dead-letters it); raises if it cannot."""

# What the driver raises for a document it cannot encode: BSON errors (a NUL or `$` key), an integer
# beyond 64 bits, a string with a lone surrogate.
_ENCODING_ERRORS = (BSONError, OverflowError, UnicodeError, ValueError, TypeError)


async def _log_only(document: Document, reason: str) -> None:
    log.error("delivery_log_row_unstorable", event_id=document.get("eventId"), reason=reason)


def unstorable_reason(document: Document) -> str | None:
    """Why the driver cannot encode a document, or None if it can (a check without I/O)."""
    try:
        bson.encode(document)
    except _ENCODING_ERRORS as error:
        return f"{type(error).__name__}: {error}"[:500]
    return None


def _attempt_key(document: Document) -> AttemptKey:
    """The attempt a buffered row's document records (its unique key's fields)."""
    return AttemptKey(
        document["tenantId"],
        document["eventId"],
        Channel(document["channel"]),
        document["endpointId"],
        document["attempt"],
    )


class DeliveryLogWriter:
    def __init__(
        self,
        mongo: MongoStore,
        batch_size: int,
        flush_interval_seconds: float,
        reject: UnstorableRowHandler = _log_only,
    ) -> None:
        self.reject = reject
        self.marks: PartitionMarkKeeper | None = None
        """The event consumer's partition marks, stored before every batch of rows (partition_marks)."""
        self._collection = mongo.collection(DELIVERY_LOGS.collection)
        self._pages = mongo.collection(DELIVERY_LOG_PAGES.collection)
        self._state = mongo.collection(DELIVERY_STATE.collection)
        self._state_updates: list[UpdateOne] = []
        self._batch_size = batch_size
        self._interval = flush_interval_seconds
        # Keyed by the attempt, not by the row's `_id`: `holds` is asked once per attempt, and the
        # key is a tuple the dispatcher already has, where the `_id` is a SHA-1 to compute.
        self._pending: dict[AttemptKey, dict[str, Any]] = {}
        self._lock = asyncio.Lock()
        self._loops = BackgroundTasks("delivery-log")

    def add(self, row: DeliveryLogRow, body: bytes) -> None:
        """Buffer a row with the envelope bytes it delivered (what a replay re-sends, same eventId)."""
        self._pending[row.key] = row_document(row, body)

    def holds(self, key: AttemptKey) -> bool:
        """Whether this attempt's row is buffered, not yet flushed."""
        return key in self._pending

    def add_state_update(self, update: UpdateOne) -> None:
        """Write a retried delivery's state with the next flush, after the rows added before it."""
        self._state_updates.append(update)

    async def flush(self) -> None:
        """Write what is buffered; on a database error keep it and raise (the caller must not commit)."""
        async with self._lock:
            if not self._pending and not self._state_updates:
                return
            # The marks first, then the batch, with no await between: every row in the batch comes
            # from a record started before this snapshot of the marks.
            keeper = self.marks
            marks = keeper.pending() if keeper is not None else {}
            batch, state_updates = self._pending, self._state_updates
            self._pending, self._state_updates = {}, []
            documents = list(batch.values())
            try:
                if keeper is not None and marks and documents:
                    # Stored before any row: no row ever lies past its partition's stored mark.
                    await keeper.save(marks)
                pages = page_documents(documents)
                if pages:
                    # The rows' audit-trail entries before the rows: a stored row is always listed.
                    await self._pages.insert_many(pages, ordered=False)
                for start in range(0, len(documents), self._batch_size):
                    refused = await self._write_rows(documents[start : start + self._batch_size])
                    for document, reason in refused:
                        await self.reject(document, reason)
                        UNSTORABLE_ROWS.labels(reason.split(":", 1)[0][:64]).inc()
                        # Stored or dead-lettered: either way it is no longer this writer's to keep.
                        batch.pop(_attempt_key(document), None)
                if state_updates:
                    await self._state.bulk_write(state_updates, ordered=False)
            except BaseException:
                # Not written (a database error, or cancelled by a drain deadline): keep it for the
                # next flush; never drop rows whose deliveries already happened.
                for key, document in batch.items():
                    self._pending.setdefault(key, document)
                self._state_updates = state_updates + self._state_updates
                raise
            if documents:
                oldest = min(document["createdAt"] for document in documents)
                LOG_ROW_WAIT_SECONDS.observe(max(0.0, (datetime.now(UTC) - oldest).total_seconds()))

    async def _write_rows(self, documents: list[Document]) -> list[tuple[Document, str]]:
        """Insert the rows; those whose key is already stored replace the stored row instead.

        Returns the rows the database refused, with why; the others are stored when it returns.
        """
        try:
            await self._collection.insert_many(documents, ordered=False)
            return []
        except _ENCODING_ERRORS:
            # The driver refused the whole batch for one document it cannot encode: find it, set it
            # aside, write the others.
            refused: list[tuple[Document, str]] = []
            storable: list[Document] = []
            for document in documents:
                reason = unstorable_reason(document)
                if reason is None:
                    storable.append(document)
                else:
                    refused.append((document, reason))
            if not refused:
                raise  # not a document's fault: keep the batch for the next flush
            return refused + (await self._write_rows(storable) if storable else [])
        except BulkWriteError as error:
            outcomes = bulk_insert_outcomes(len(documents), error.details.get("writeErrors") or [])
        refused = [
            (document, f"{type(outcome).__name__}: {outcome}"[:500])
            for document, outcome in zip(documents, outcomes, strict=True)
            if isinstance(outcome, Exception)
        ]
        rewrites = [
            ReplaceOne({"_id": document["_id"]}, document, upsert=True)
            for document, inserted in zip(documents, outcomes, strict=True)
            if inserted is False
        ]
        if rewrites:
            await self._collection.bulk_write(rewrites, ordered=False)
        return refused

    def start(self) -> None:
        self._loops.spawn("flush", self._flush_periodically())

    def is_alive(self) -> bool:
        return self._loops.alive()

    async def _flush_periodically(self) -> None:
        """A flush every `flush_interval_seconds`, counted from the start of the previous one: rows
        that arrived during a slow flush are written as soon as it ends, not an interval later."""
        loop = asyncio.get_running_loop()
        while True:
            began = loop.time()
            try:
                await self.flush()
            except PyMongoError as error:
                log.warning("delivery_log_flush_failed", error=repr(error))
            await asyncio.sleep(max(0.0, self._interval - (loop.time() - began)))

    async def stop(self) -> None:
        await self._loops.cancel_all()
        await self.flush()
