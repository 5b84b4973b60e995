"""Delivery-log rows stored as the dispatcher stores them: the audit-trail pages first, then the rows."""

from __future__ import annotations

from typing import Any

from aforo.shared.audit_trail import page_documents
from aforo.shared.collections import DELIVERY_LOG_PAGES, DELIVERY_LOGS
from aforo.shared.mongo import MongoStore


async def store_rows(mongo: MongoStore, rows: list[dict[str, Any]]) -> None:
    """Insert `rows` (each with its `_id`) and the pages that list them on the customer's trail."""
    await mongo.collection(DELIVERY_LOG_PAGES.collection).insert_many(page_documents(rows))
    await mongo.collection(DELIVERY_LOGS.collection).insert_many(rows)
