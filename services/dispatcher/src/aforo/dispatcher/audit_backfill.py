"""Pages for the rows stored before the audit trail had pages; then the rows' old index goes.

Earlier versions indexed the rows themselves (`tenant_customer_newest` on `delivery_logs`). While that
index exists, some rows may have no page: the dispatcher pages every row once, in the background
after it starts, then drops the index (which no query needs any more, and which every insert pays
for). Idempotent: a page's `_id` derives from the rows it lists, so a backfill that is interrupted
(a restart, another replica doing the same) and run again writes the same pages again, and a row
paged twice is still listed once (`aforo.shared.audit_trail`).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Final

from pymongo import ReplaceOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import OperationFailure, PyMongoError

from aforo.shared.audit_trail import page_documents
from aforo.shared.collections import DELIVERY_LOG_PAGES, DELIVERY_LOGS
from aforo.shared.logging import get_logger
from aforo.shared.mongo import Document, MongoStore

log = get_logger(__name__)

LEGACY_ROW_INDEX: Final = "tenant_customer_newest"
"""The index on `delivery_logs` the pages replace."""
INDEX_NOT_FOUND: Final = 27


def legacy_page_id(page: Document) -> str:
    """A page's `_id` from what it lists: the same rows give the same page."""
    entries = page["entries"]
    first, last = entries[0], entries[-1]
    return "legacy:" + str(
        uuid.uuid5(
            uuid.NAMESPACE_URL,
            f"aforo-audit-page:{page['tenantId']}/{page['endCustomerId']}/{first['rowId']}/{last['rowId']}"
            f"/{len(entries)}",
        )
    )


async def backfill_pages(mongo: MongoStore, batch_size: int = 1_000) -> int | None:
    """Page the rows the old index covered, then drop it; how many rows were read (None: nothing to do)."""
    rows = mongo.collection(DELIVERY_LOGS.collection)
    pages = mongo.collection(DELIVERY_LOG_PAGES.collection)
    if LEGACY_ROW_INDEX not in await rows.index_information():
        return None
    log.info("audit_trail_backfill_started")
    read = 0
    batch: list[Document] = []
    cursor = rows.find({}, {"tenantId": 1, "endCustomerId": 1, "createdAt": 1}).sort("_id", 1)
    async for row in cursor.batch_size(batch_size):
        batch.append(row)
        if len(batch) >= batch_size:
            read += await _write_pages(pages, batch)
            batch = []
    if batch:
        read += await _write_pages(pages, batch)
    try:
        await rows.drop_index(LEGACY_ROW_INDEX)
    except OperationFailure as error:
        if error.code != INDEX_NOT_FOUND:  # another replica dropped it first
            raise
    log.info("audit_trail_backfill_finished", rows=read)
    return read


async def backfill_until_done(mongo: MongoStore, retry_seconds: float = 60.0) -> None:
    """`backfill_pages` in the background: a database error is logged and the backfill runs again."""
    while True:
        try:
            await backfill_pages(mongo)
            return
        except PyMongoError as error:
            log.warning("audit_trail_backfill_failed", error=repr(error)[:300], retry_seconds=retry_seconds)
        await asyncio.sleep(retry_seconds)


async def _write_pages(pages: AsyncCollection[Document], batch: list[Document]) -> int:
    documents = page_documents(batch)
    if documents:
        writes = [ReplaceOne({"_id": legacy_page_id(page)}, page, upsert=True) for page in documents]
        await pages.bulk_write(writes, ordered=False)
    return len(batch)
