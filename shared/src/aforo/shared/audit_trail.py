"""The by-customer audit trail's index: pages of row references, written beside the delivery-log rows.

Why not a secondary index on `delivery_logs`: an index costs the database on every row's insert, and
a row is inserted for every delivery. On SecantusDB (the suite's database here) a collection with any
secondary index costs about 0.17 ms of CPU per inserted row against 0.06 ms with `_id` alone
(bench/README.md); the audit trail is the only read of the rows that is not by `_id`. So the rows keep
`_id` alone, and every batch of rows the dispatcher stores is preceded by one page per (tenant,
customer, `PAGE_SPAN` window) listing the `(createdAt, _id)` of that customer's rows in the batch:
about one page per customer per flush instead of one index entry per row.

A page entry is a pointer, trusted only while the row it names exists with that `createdAt`. So a page
written for rows whose insert then failed (the batch is written again later: a second entry), a
PENDING reservation later replaced by its outcome (the row's `createdAt` moved), or a batch written
twice never shows a row twice, or a row that is not there. Pages first, then rows: every stored row has
an entry. Pure functions and one reader; see docs/dispatch.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from bson import ObjectId
from pymongo.asynchronous.collection import AsyncCollection

Document = dict[str, Any]

PAGE_SPAN: Final = timedelta(minutes=1)
"""Every entry of a page lies in one window of this length: a page's `newest` is less than
`PAGE_SPAN` after any of its entries, which bounds how far past a position a reader has to look."""

MAX_PAGE_ENTRIES: Final = 10_000
"""At most this many entries on one page (~0.75 MB): a flush after a long database outage may hold a
burst of one customer's rows, and a document must stay far below MongoDB's 16 MB."""

_PAGE_SPAN_MS: Final = PAGE_SPAN // timedelta(milliseconds=1)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ROW_FETCH_MIN: Final = 32
"""Rows are fetched by `_id` in chunks of at least this many (fewer round trips on a filtered read)."""
_ROW_FETCH_ALL: Final = 256
"""The chunk of a read without a limit (the recovery's walk of a window)."""
_PAGE_BATCH: Final = 64


def millisecond_floor(moment: datetime) -> datetime:
    """`moment` at the precision MongoDB stores (what a query bound on it compares)."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def page_documents(rows: Iterable[Mapping[str, Any]]) -> list[Document]:
    """The pages that index `rows` (stored `delivery_logs` documents): one per (tenant, customer,
    window), entries newest first. Rows without a customer or a time (none the dispatcher writes) are
    not listed: the audit trail is read by customer and time."""
    groups: dict[tuple[str, str, int], list[tuple[datetime, Any]]] = {}
    for row in rows:
        created, tenant_id, customer_id = row.get("createdAt"), row.get("tenantId"), row.get("endCustomerId")
        if (
            not isinstance(created, datetime)
            or not isinstance(tenant_id, str)
            or not isinstance(customer_id, str)
        ):
            continue
        created = millisecond_floor(_aware(created))
        window = (created - _EPOCH) // timedelta(milliseconds=1) // _PAGE_SPAN_MS
        groups.setdefault((tenant_id, customer_id, window), []).append((created, row["_id"]))
    pages = []
    for (tenant_id, customer_id, _), entries in groups.items():
        entries.sort(key=lambda entry: position_key(*entry), reverse=True)
        for start in range(0, len(entries), MAX_PAGE_ENTRIES):
            listed = entries[start : start + MAX_PAGE_ENTRIES]
            pages.append(
                {
                    "tenantId": tenant_id,
                    "endCustomerId": customer_id,
                    "newest": listed[0][0],
                    "oldest": listed[-1][0],
                    "entries": [{"createdAt": created, "rowId": row_id} for created, row_id in listed],
                }
            )
    return pages


def position_key(created_at: datetime, row_id: Any) -> tuple[datetime, int, str]:
    """A row's place in the trail, `(createdAt, _id)` in MongoDB's order (strings before ObjectIds:
    rows written before ids were derived from their key have ObjectIds)."""
    rank = 0 if isinstance(row_id, str) else 1 if isinstance(row_id, ObjectId) else 2
    return (_aware(created_at), rank, str(row_id))


@dataclass(frozen=True)
class TrailWindow:
    """Which part of a customer's trail to read: `[from_time, to_time)` and strictly older than `before`
    (the previous page's last row, as `(createdAt, _id)`)."""

    from_time: datetime | None = None
    to_time: datetime | None = None
    before: tuple[datetime, Any] | None = None

    def upper_time(self) -> datetime | None:
        """No entry at or past this time is wanted (None: no bound)."""
        bounds = [millisecond_floor(_aware(self.to_time))] if self.to_time is not None else []
        if self.before is not None:
            bounds.append(_aware(self.before[0]) + timedelta(milliseconds=1))
        return min(bounds) if bounds else None

    def holds(self, created_at: datetime, row_id: Any) -> bool:
        created_at = _aware(created_at)
        if self.from_time is not None and created_at < millisecond_floor(_aware(self.from_time)):
            return False
        if self.to_time is not None and created_at >= millisecond_floor(_aware(self.to_time)):
            return False
        return self.before is None or position_key(created_at, row_id) < position_key(*self.before)

    def page_filter(self, tenant_id: str, customer_id: str) -> Document:
        """The pages that may hold an entry in this window: those whose `newest` is in
        `[from, upper + PAGE_SPAN)` and whose `oldest` is before `upper`."""
        clauses: Document = {"tenantId": tenant_id, "endCustomerId": customer_id}
        newest: Document = {}
        if self.from_time is not None:
            # `>= from` as `> from - 1 ms` (the same pages at BSON's millisecond precision): SecantusDB
            # 0.7.0b3 treats a `$gte` bound on a descending index field as `$gt`.
            newest["$gt"] = millisecond_floor(_aware(self.from_time)) - timedelta(milliseconds=1)
        upper = self.upper_time()
        if upper is not None:
            newest["$lt"] = upper + PAGE_SPAN
            clauses["oldest"] = {"$lt": upper}
        if newest:
            clauses["newest"] = newest
        return clauses


@dataclass(frozen=True)
class _Entry:
    key: tuple[datetime, int, str]
    created_at: datetime
    row_id: Any


class AuditTrail:
    """Reads a customer's rows newest first through the pages (`delivery_log_pages`)."""

    def __init__(self, pages: AsyncCollection[Document], rows: AsyncCollection[Document]) -> None:
        self._pages = pages
        self._rows = rows

    async def newest_first(
        self,
        tenant_id: str,
        customer_id: str,
        window: TrailWindow,
        *,
        where: Mapping[str, Any] | None = None,
        keep: Callable[[Document], bool] | None = None,
        projection: Mapping[str, Any] | None = None,
        limit: int | None = None,
    ) -> list[Document]:
        """Up to `limit` rows (all when None) of the customer in `window` that match `where` (conditions
        on a row's other fields, asked of the database with the rows' `_id`s) and `keep` (a test made
        here, for a condition too large to send with every fetch), newest first by `(createdAt, _id)`;
        `projection` names or excludes fields (the row's time and `_id` always come)."""
        reading = _Reading(self._rows, tenant_id, customer_id, window, where or {}, keep, projection, limit)
        pages = (
            self._pages.find(window.page_filter(tenant_id, customer_id), {"newest": 1, "entries": 1})
            .sort("newest", -1)
            .batch_size(_PAGE_BATCH)
        )
        async for page in pages:
            # No page after this one has an entry newer than its `newest`: what is newer is final.
            newest = page.get("newest")
            if isinstance(newest, datetime) and await reading.settle(_aware(newest)):
                return reading.found
            reading.add(page.get("entries"))
        await reading.settle(None)
        return reading.found


class _Reading:
    """One read's state: entries waiting to be settled, rows found."""

    def __init__(
        self,
        rows: AsyncCollection[Document],
        tenant_id: str,
        customer_id: str,
        window: TrailWindow,
        where: Mapping[str, Any],
        keep: Callable[[Document], bool] | None,
        projection: Mapping[str, Any] | None,
        limit: int | None,
    ) -> None:
        self._rows = rows
        self._window = window
        # The tenant and customer are the read's own: no condition of the caller's replaces them.
        self._query = {**where, "tenantId": tenant_id, "endCustomerId": customer_id}
        self._keep = keep
        self._projection = dict(projection) if projection else None
        self._limit = limit
        self._waiting: list[_Entry] = []
        self._seen: set[tuple[datetime, int, str]] = set()
        self.found: list[Document] = []

    def add(self, entries: object) -> None:
        if not isinstance(entries, list):
            return
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            created, row_id = entry.get("createdAt"), entry.get("rowId")
            if isinstance(created, datetime) and row_id is not None and self._window.holds(created, row_id):
                created = _aware(created)
                self._waiting.append(_Entry(position_key(created, row_id), created, row_id))

    async def settle(self, newer_than: datetime | None) -> bool:
        """Resolve, newest first, the waiting entries newer than `newer_than` (all when None) into
        rows; True once `limit` rows are found."""
        self._waiting.sort(key=lambda entry: entry.key, reverse=True)
        ready = len(self._waiting)
        if newer_than is not None:
            ready = next(
                (index for index, entry in enumerate(self._waiting) if entry.created_at <= newer_than),
                ready,
            )
        settled, self._waiting = self._waiting[:ready], self._waiting[ready:]
        start = 0
        while start < len(settled):
            wanted = (
                _ROW_FETCH_ALL if self._limit is None else max(_ROW_FETCH_MIN, self._limit - len(self.found))
            )
            chunk = [entry for entry in settled[start : start + wanted] if entry.key not in self._seen]
            start += wanted
            if chunk and await self._resolve(chunk):
                return True
        return False

    async def _resolve(self, chunk: list[_Entry]) -> bool:
        ids = list({entry.row_id for entry in chunk})
        rows = {
            row["_id"]: row
            async for row in self._rows.find({**self._query, "_id": {"$in": ids}}, self._projection)
        }
        for entry in chunk:
            row = rows.get(entry.row_id)
            if row is None or entry.key in self._seen:
                continue  # written for a batch that was not stored (yet), or listed twice
            created = row.get("createdAt")
            if not isinstance(created, datetime) or _aware(created) != entry.created_at:
                continue  # the row was replaced since (a reservation by its outcome): a stale entry
            if self._keep is not None and not self._keep(row):
                continue
            self._seen.add(entry.key)
            self.found.append(row)
            if self._limit is not None and len(self.found) >= self._limit:
                return True
        return False
