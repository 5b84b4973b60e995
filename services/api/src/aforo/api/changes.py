"""What each configuration write tells the trigger and dispatcher caches (`<prefix>config.changes`).

One `ConfigChange` per MongoDB write, carrying the document's new `version`, so a cache keeps the
newest whatever order changes and resyncs arrive in. An endpoint's change never carries its secrets:
a cache that signs reads the ciphertexts from MongoDB when the version moves.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from aforo.shared.config_changes import ConfigChange, ConfigKind, ConfigOperation
from aforo.shared.envelope import format_utc

_NEVER_PUBLISHED = frozenset({"_id", "secrets"})


def change_document(document: Mapping[str, Any]) -> dict[str, Any]:
    """A stored document for the topic: no `_id`, no secrets, timestamps as wire strings."""
    return {
        key: format_utc(value) if isinstance(value, datetime) else value
        for key, value in document.items()
        if key not in _NEVER_PUBLISHED
    }


def upserted(
    kind: ConfigKind, document_id: str, document: Mapping[str, Any], *, now: datetime
) -> ConfigChange:
    """The change after a create or update; `document` is the stored one, after the write."""
    return ConfigChange(
        kind=kind,
        tenant_id=str(document["tenantId"]),
        document_id=document_id,
        operation=ConfigOperation.UPSERT,
        version=int(document["version"]),
        document=change_document(document),
        changed_at=now,
    )


def deleted(
    kind: ConfigKind, tenant_id: str, document_id: str, *, version: int, now: datetime
) -> ConfigChange:
    """The change after a delete; `version` must be above every version the document had."""
    return ConfigChange(
        kind=kind,
        tenant_id=tenant_id,
        document_id=document_id,
        operation=ConfigOperation.DELETE,
        version=version,
        document=None,
        changed_at=now,
    )


def preference_document_id(customer_id: str, event_type: str) -> str:
    """A preference's id in config changes: `<customerId>:<eventType>`."""
    return f"{customer_id}:{event_type}"
