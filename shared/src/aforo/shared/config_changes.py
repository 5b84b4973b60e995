"""Configuration changes on the compacted `<prefix>config.changes` topic.

The API writes a definition or endpoint to MongoDB, then publishes a `ConfigChange`; the trigger
applies it to its in-memory cache within a poll (well under the 2 s the design asks for). The
dispatcher reads it too (`aforo.dispatcher.config_feed`): a change drops its cached answers about the
tenant, which it otherwise keeps for up to a minute while it follows the topic (1 s when it does
not); it publishes changes of its own (an endpoint it disables, `aforo.dispatcher.consequences`).
MongoDB stays the source of truth: a cache loads it on a cold start and again periodically, and
`version` (a per-document counter) makes a stale change lose to a newer one whatever the order.
The key `<kind>:<tenantId>:<id>` keeps the latest change per document after compaction.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from aforo.shared.serde import dumps_json, loads_json
from aforo.shared.topics import CONFIG_CHANGES


class ConfigKind(StrEnum):
    EVENT_DEFINITION = "event_definition"
    WEBHOOK_ENDPOINT = "webhook_endpoint"
    NOTIFICATION_PREFERENCE = "notification_preference"
    CHANNEL_PROVIDER = "channel_provider"
    CONTACT_DESTINATION = "contact_destination"
    CHANNEL_TEMPLATE = "channel_template"


class ConfigOperation(StrEnum):
    UPSERT = "upsert"
    DELETE = "delete"


class ConfigChange(BaseModel):
    model_config = ConfigDict(populate_by_name=True, frozen=True, serialize_by_alias=True)

    kind: ConfigKind
    tenant_id: str = Field(alias="tenantId", min_length=1)
    document_id: str = Field(alias="documentId", min_length=1)
    operation: ConfigOperation
    version: int = Field(ge=0)
    document: dict[str, Any] | None = None
    changed_at: datetime | None = Field(default=None, alias="changedAt")

    @property
    def key(self) -> bytes:
        return f"{self.kind.value}:{self.tenant_id}:{self.document_id}".encode()

    def to_json_bytes(self) -> bytes:
        return dumps_json(self.model_dump(mode="json", by_alias=True))

    @classmethod
    def from_json_bytes(cls, raw: bytes) -> ConfigChange:
        return cls.model_validate(loads_json(raw))


CONFIG_TOPIC_SETTINGS = CONFIG_CHANGES.kafka_config()
