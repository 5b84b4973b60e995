"""A tenant's documents of one collection, addressed by their own id field: find, list, update, delete.

Every query this helper sends carries `tenantId`, so another tenant's document is simply not found
(a 404, never a 403 that would confirm it exists). Webhook endpoints and contact destinations use it
for the reads and writes they share; what differs (an endpoint's update is conditional on the
version it read, so a secret rotation is never computed from stale secrets) stays in their routes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

from aforo.api.problems import NotFoundError
from aforo.shared.mongo import Document


@dataclass(frozen=True)
class TenantDocuments:
    collection: Callable[[], AsyncCollection[Document]]
    id_field: str
    not_found: Callable[[str], NotFoundError]

    def key(self, tenant_id: str, document_id: str) -> dict[str, Any]:
        return {"tenantId": tenant_id, self.id_field: document_id}

    async def find(self, tenant_id: str, document_id: str, projection: Mapping[str, int]) -> Document:
        document = await self.collection().find_one(self.key(tenant_id, document_id), dict(projection))
        if document is None:
            raise self.not_found(document_id)
        return document

    async def for_customer(
        self, tenant_id: str, customer_id: str, projection: Mapping[str, int]
    ) -> list[Document]:
        """One customer's documents, oldest first (ties by id, so the order is stable)."""
        cursor = (
            self.collection()
            .find({"tenantId": tenant_id, "endCustomerId": customer_id}, dict(projection))
            .sort([("createdAt", 1), (self.id_field, 1)])
        )
        return [document async for document in cursor]

    async def update(
        self,
        tenant_id: str,
        document_id: str,
        fields: Mapping[str, Any],
        *,
        now: datetime,
        projection: Mapping[str, int],
    ) -> Document:
        """Set `fields` and `updatedAt` and bump `version`, in one write; the document after it."""
        document = await self.collection().find_one_and_update(
            self.key(tenant_id, document_id),
            {"$set": {**fields, "updatedAt": now}, "$inc": {"version": 1}},
            projection=dict(projection),
            return_document=ReturnDocument.AFTER,
        )
        if document is None:
            raise self.not_found(document_id)
        return document

    async def delete(self, tenant_id: str, document_id: str) -> int:
        """Remove the document; the version its delete is published with (one above the last write)."""
        removed = await self.collection().find_one_and_delete(
            self.key(tenant_id, document_id), projection={"version": 1}
        )
        if removed is None:
            raise self.not_found(document_id)
        return int(removed.get("version", 0)) + 1
