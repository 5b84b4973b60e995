"""Pages for the rows stored before the audit trail had pages; then the rows' old index goes.

Earlier versions indexed the rows themselves (`tenant_customer_newest` on `delivery_logs`). While that
index exists, some rows may have no page: the dispatcher pages every row once, in the background
after it starts, then drops the index (which no query needs any more, and which every insert pays
for). Idempotent: a page's `_id` is a digest of everything it lists and a page is only ever inserted,
never replaced, so a backfill that is interrupted (a restart, another replica doing the same) and run
again adds pages beside the old ones, and a row paged twice is still listed once
(`aforo.shared.audit_trail`).

A rolling upgrade leaves one gap: a dispatcher of the old version still running after the scan went
past its rows' place writes rows without pages. Stop the old dispatchers before the new ones start,
or page everything again once they are gone: `python -m aforo.dispatcher.audit_backfill --all`
(docs/operations.md).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
from collections.abc import Sequence
from typing import Final

from pymongo import ASCENDING, DESCENDING, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import OperationFailure, PyMongoError

from aforo.dispatcher.settings import DispatcherSettings
from aforo.shared.audit_trail import page_documents
from aforo.shared.collections import DELIVERY_LOG_PAGES, DELIVERY_LOGS
from aforo.shared.logging import configure_logging, get_logger
from aforo.shared.mongo import Document, MongoStore

log = get_logger(__name__)

LEGACY_ROW_INDEX: Final = "tenant_customer_newest"
"""The index on `delivery_logs` the pages replace."""
LEGACY_ROW_ORDER: Final = [
    ("tenantId", ASCENDING),
    ("endCustomerId", ASCENDING),
    ("createdAt", DESCENDING),
    ("_id", DESCENDING),
]
"""Its keys: scanned in this order, one customer's rows come together and make few, full pages."""
INDEX_NOT_FOUND: Final = 27
_ROW_FIELDS: Final = {"tenantId": 1, "endCustomerId": 1, "createdAt": 1}


def legacy_page_id(page: Document) -> str:
    """A page's `_id`, a digest of its customer and every entry: the same rows give the same page,
    and any other set of rows another page."""
    digest = hashlib.sha256(f"{page['tenantId']}\0{page['endCustomerId']}".encode())
    for entry in page["entries"]:
        digest.update(f"\0{entry['rowId']!r}\0{entry['createdAt'].isoformat()}".encode())
    return "legacy:" + digest.hexdigest()


async def backfill_pages(
    mongo: MongoStore, batch_size: int = 1_000, *, every_row: bool = False
) -> int | None:
    """Page the rows the old index covered, then drop it; how many rows were read (None: nothing to
    do). With `every_row`, page every row whether the old index is there or not (in `_id` order
    when it is gone: slower, more pages, the same trail)."""
    rows = mongo.collection(DELIVERY_LOGS.collection)
    pages = mongo.collection(DELIVERY_LOG_PAGES.collection)
    indexed = LEGACY_ROW_INDEX in await rows.index_information()
    if not indexed and not every_row:
        return None
    log.info("audit_trail_backfill_started", every_row=every_row)
    if indexed:
        cursor = rows.find({}, _ROW_FIELDS).sort(LEGACY_ROW_ORDER).hint(LEGACY_ROW_INDEX)
    else:
        cursor = rows.find({}, _ROW_FIELDS).sort("_id", ASCENDING)
    read = 0
    batch: list[Document] = []
    async for row in cursor.batch_size(batch_size):
        batch.append(row)
        if len(batch) >= batch_size:
            read += await _write_pages(pages, batch)
            batch = []
    if batch:
        read += await _write_pages(pages, batch)
    if indexed:
        try:
            await rows.drop_index(LEGACY_ROW_INDEX)
        except OperationFailure as error:
            if error.code != INDEX_NOT_FOUND:  # another replica dropped it first
                raise
    log.info("audit_trail_backfill_finished", rows=read)
    return read


async def backfill_until_done(mongo: MongoStore, retry_seconds: float = 60.0) -> None:
    """`backfill_pages` in the background: a failure is logged and the backfill runs again later
    (the dispatcher goes on delivering either way; only cancellation ends it early)."""
    while True:
        try:
            await backfill_pages(mongo)
            return
        except Exception as error:
            log.warning("audit_trail_backfill_failed", error=repr(error)[:300], retry_seconds=retry_seconds)
        await asyncio.sleep(retry_seconds)


async def _write_pages(pages: AsyncCollection[Document], batch: list[Document]) -> int:
    documents = page_documents(batch)
    if documents:
        writes = [
            UpdateOne({"_id": legacy_page_id(page)}, {"$setOnInsert": page}, upsert=True)
            for page in documents
        ]
        await pages.bulk_write(writes, ordered=False)
    return len(batch)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m aforo.dispatcher.audit_backfill [--all]`: the backfill by hand, with the
    dispatcher's settings (AFORO_MONGO_URI ...)."""
    parser = argparse.ArgumentParser(prog="python -m aforo.dispatcher.audit_backfill", description=__doc__)
    parser.add_argument(
        "--all",
        action="store_true",
        help="page every row, even when the old index is gone (after a rolling upgrade)",
    )
    arguments = parser.parse_args(argv)
    settings = DispatcherSettings()
    configure_logging("audit-backfill", settings.log_level, json=settings.log_json)

    async def run() -> int | None:
        mongo = MongoStore(settings.mongo_uri, settings.mongo_database, app_name="aforo-audit-backfill")
        try:
            await mongo.start([DELIVERY_LOG_PAGES])
            return await backfill_pages(mongo, every_row=arguments.all)
        finally:
            await mongo.close()

    try:
        read = asyncio.run(run())
    except PyMongoError as error:
        print(f"backfill failed: {error}", file=sys.stderr)
        return 1
    print("nothing to do: no row lacks a page" if read is None else f"paged {read} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
