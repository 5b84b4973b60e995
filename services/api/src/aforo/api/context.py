"""What every route handler needs: settings, MongoDB collections, the publisher, the secret box, a clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from aforo.api import changes
from aforo.api.publishing import Publisher
from aforo.api.settings import ApiSettings
from aforo.shared.audit_trail import AuditTrail
from aforo.shared.collections import (
    CHANNEL_PROVIDERS,
    CHANNEL_TEMPLATES,
    CONFIG_VERSIONS,
    CONTACT_DESTINATIONS,
    DELIVERY_LOG_PAGES,
    DELIVERY_LOGS,
    EVENT_DEFINITIONS,
    NOTIFICATION_PREFERENCES,
    WEBHOOK_ENDPOINTS,
)
from aforo.shared.config_changes import ConfigKind
from aforo.shared.mongo import Document, MongoStore
from aforo.shared.secret_box import SecretBox


def utc_now() -> datetime:
    """Now, at the millisecond precision BSON dates keep, so a response shows what a read returns."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


@dataclass
class ApiContext:
    settings: ApiSettings
    mongo: MongoStore
    publisher: Publisher
    secret_box: SecretBox
    clock: Callable[[], datetime] = field(default=utc_now)

    @property
    def body_limit(self) -> int:
        return self.settings.max_request_body_bytes

    @property
    def definitions(self) -> AsyncCollection[Document]:
        return self.mongo.collection(EVENT_DEFINITIONS.collection)

    @property
    def endpoints(self) -> AsyncCollection[Document]:
        return self.mongo.collection(WEBHOOK_ENDPOINTS.collection)

    @property
    def preferences(self) -> AsyncCollection[Document]:
        return self.mongo.collection(NOTIFICATION_PREFERENCES.collection)

    @property
    def delivery_logs(self) -> AsyncCollection[Document]:
        return self.mongo.collection(DELIVERY_LOGS.collection)

    @property
    def audit_trail(self) -> AuditTrail:
        """The delivery log read by customer, through its pages (`aforo.shared.audit_trail`)."""
        return AuditTrail(self.mongo.collection(DELIVERY_LOG_PAGES.collection), self.delivery_logs)

    @property
    def channel_providers(self) -> AsyncCollection[Document]:
        return self.mongo.collection(CHANNEL_PROVIDERS.collection)

    @property
    def contact_destinations(self) -> AsyncCollection[Document]:
        return self.mongo.collection(CONTACT_DESTINATIONS.collection)

    @property
    def channel_templates(self) -> AsyncCollection[Document]:
        return self.mongo.collection(CHANNEL_TEMPLATES.collection)

    async def publish_deletion(
        self, kind: ConfigKind, tenant_id: str, document_id: str, *, version: int
    ) -> None:
        """The config change that tells the trigger and the dispatcher a document is gone."""
        change = changes.deleted(kind, tenant_id, document_id, version=version, now=self.clock())
        await self.publisher.config_change(change)

    async def next_version(self, kind: ConfigKind, tenant_id: str, document_id: str) -> int:
        """The next version of a document, from a counter that outlives the document itself."""
        versions = self.mongo.collection(CONFIG_VERSIONS.collection)
        key = {"tenantId": tenant_id, "kind": kind.value, "documentId": document_id}
        try:
            counter = await versions.find_one_and_update(
                key, {"$inc": {"version": 1}}, upsert=True, return_document=ReturnDocument.AFTER
            )
        except DuplicateKeyError:
            # Two first writes raced to insert the counter; the loser increments the winner's.
            counter = await versions.find_one_and_update(
                key, {"$inc": {"version": 1}}, return_document=ReturnDocument.AFTER
            )
        assert counter is not None  # upserted above, or inserted by the racing writer
        return int(counter["version"])
