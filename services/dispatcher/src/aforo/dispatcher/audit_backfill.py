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
or page the rows written since the upgrade began once they are gone:
`python -m aforo.dispatcher.audit_backfill --all --since <time>` (docs/operations.md).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Final

from pymongo import ASCENDING, DESCENDING, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import PyMongoError

from aforo.dispatcher.settings import DispatcherSettings
from aforo.shared.audit_trail import page_documents
from aforo.shared.collections import DELIVERY_LOG_PAGES, DELIVERY_LOGS
from aforo.shared.lifecycle import settings_or_exit
from aforo.shared.logging import get_logger
from aforo.shared.mongo import Document, MongoStore, drop_index_if_present

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
_ROW_FIELDS: Final = {"tenantId": 1, "endCustomerId": 1, "createdAt": 1}


def legacy_page_id(page: Document) -> str:
    """A page's `_id`, a digest of its customer and every entry: the same rows give the same page,
    and any other set of rows another page."""
    digest = hashlib.sha256(f"{page['tenantId']}\0{page['endCustomerId']}".encode())
    for entry in page["entries"]:
        digest.update(f"\0{entry['rowId']!r}\0{entry['createdAt'].isoformat()}".encode())
    return "legacy:" + digest.hexdigest()


async def backfill_pages(
    mongo: MongoStore,
    batch_size: int = 1_000,
    *,
    every_row: bool = False,
    since: datetime | None = None,
) -> int | None:
    """Page the rows the old index covered, then drop it; how many rows were read (None: the index is
    gone, nothing to do). With `every_row`, page every row (created at or after `since`, when given)
    whether the old index is there or not: rows an old-version dispatcher wrote after the index went."""
    rows = mongo.collection(DELIVERY_LOGS.collection)
    pages = mongo.collection(DELIVERY_LOG_PAGES.collection)
    indexed = LEGACY_ROW_INDEX in await rows.index_information()
    if not indexed and not every_row:
        return None
    log.info("audit_trail_backfill_started", every_row=every_row, since=since)
    # In the old index's order either way, so one customer's rows share pages; without the index,
    # the database sorts (spilling to disk on a large log).
    wanted = {"createdAt": {"$gte": since}} if since is not None else {}
    cursor = rows.find(wanted, _ROW_FIELDS).sort(LEGACY_ROW_ORDER).batch_size(batch_size)
    cursor = cursor.hint(LEGACY_ROW_INDEX) if indexed else cursor.allow_disk_use(True)
    read = 0
    batch: list[Document] = []
    try:
        async for row in cursor:
            batch.append(row)
            if len(batch) >= batch_size:
                read += await _write_pages(pages, batch)
                batch = []
    finally:
        await cursor.close()  # at once, not when the server times it out, if a write failed
    if batch:
        read += await _write_pages(pages, batch)
    if indexed:
        await drop_index_if_present(rows, LEGACY_ROW_INDEX)  # another replica may have dropped it first
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
    """`python -m aforo.dispatcher.audit_backfill [--all [--since TIME]]`: the backfill by hand, with
    the dispatcher's settings (AFORO_MONGO_URI ...); exit 2 on settings that cannot work."""
    parser = argparse.ArgumentParser(prog="python -m aforo.dispatcher.audit_backfill", description=__doc__)
    parser.add_argument(
        "--all",
        action="store_true",
        help="page every row, even when the old index is gone (after a rolling upgrade)",
    )
    parser.add_argument(
        "--since",
        type=_aware_time,
        help="with --all: only rows created at or after this ISO 8601 time (when the upgrade began)",
    )
    arguments = parser.parse_args(argv)
    if arguments.since is not None and not arguments.all:
        parser.error("--since goes with --all")
    settings = settings_or_exit(DispatcherSettings, "audit-backfill")

    async def run() -> int | None:
        mongo = MongoStore(settings.mongo_uri, settings.mongo_database, app_name="aforo-audit-backfill")
        try:
            await mongo.start([DELIVERY_LOG_PAGES])
            return await backfill_pages(mongo, every_row=arguments.all, since=arguments.since)
        finally:
            await mongo.close()

    try:
        read = asyncio.run(run())
    except PyMongoError as error:
        print(f"backfill failed (the database): {error}; it is safe to run again", file=sys.stderr)
        return 1
    if read is None:
        print(
            "the old index is gone: the rows it covered are paged; rows an old-version dispatcher "
            "wrote since are paged with --all"
        )
    else:
        print(f"paged {read} rows")
    return 0


def _aware_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError("give a time zone (e.g. 2026-12-07T09:00:00Z)")
    return moment


if __name__ == "__main__":
    sys.exit(main())
