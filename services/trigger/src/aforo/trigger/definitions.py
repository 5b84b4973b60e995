"""The per-tenant cache of CUSTOM event definitions with compiled trigger rules.

Pure: fed by a MongoDB snapshot (cold start, periodic resync) and by config changes from Kafka, it
answers "which definitions does this SYSTEM event arm for this tenant" without any I/O. A change
carries the document's `version`; an older version never overwrites a newer one, whatever order
the snapshot and the change feed arrive in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aforo.shared.config_changes import ConfigChange, ConfigKind, ConfigOperation
from aforo.shared.envelope import Severity
from aforo.shared.logging import get_logger
from aforo.shared.rules import CompiledRule, RuleValidationError, compile_trigger_rule

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class CustomDefinition:
    """A tenant's CUSTOM event type whose trigger rule is compiled, ready to evaluate."""

    tenant_id: str
    event_type: str
    category: str
    severity: Severity
    rule: CompiledRule
    version: int


@dataclass
class _Entry:
    version: int
    definition: CustomDefinition | None  # None: deleted at this version
    generation: int


@dataclass
class DefinitionCache:
    """Definitions by tenant, indexed by the SYSTEM event types that arm them."""

    _entries: dict[tuple[str, str], _Entry] = field(default_factory=dict)
    _armed: dict[tuple[str, str], tuple[CustomDefinition, ...]] = field(default_factory=dict)
    _generation: int = 0

    def armed_by(self, tenant_id: str, system_event_type: str) -> tuple[CustomDefinition, ...]:
        """The definitions a SYSTEM event of this type arms for this tenant (hot path: one dict lookup)."""
        return self._armed.get((tenant_id, system_event_type), ())

    @property
    def size(self) -> int:
        return sum(1 for entry in self._entries.values() if entry.definition is not None)

    def begin_snapshot(self) -> int:
        """Mark the start of a MongoDB read; entries changed after this survive the snapshot's deletes."""
        self._generation += 1
        return self._generation

    def apply_snapshot(self, documents: Iterable[Mapping[str, Any]], started_generation: int) -> None:
        """Replace the cache with MongoDB's view, except entries a newer change touched meanwhile."""
        seen: set[tuple[str, str]] = set()
        for document in documents:
            key = (str(document.get("tenantId")), str(document.get("eventType")))
            seen.add(key)
            self._store(key, int(document.get("version", 0)), self._compile(document))
        for key, entry in list(self._entries.items()):
            if key not in seen and entry.generation < started_generation and entry.definition is not None:
                self._entries[key] = _Entry(entry.version, None, self._generation)
        self._rebuild_index()

    def apply_change(self, change: ConfigChange) -> bool:
        """Apply one change from the feed; returns whether the cache changed."""
        if change.kind is not ConfigKind.EVENT_DEFINITION:
            return False
        key = (change.tenant_id, change.document_id)
        if change.operation is ConfigOperation.DELETE or change.document is None:
            changed = self._store(key, change.version, None)
        else:
            changed = self._store(key, change.version, self._compile(change.document))
        if changed:
            self._rebuild_index()
        return changed

    def _store(self, key: tuple[str, str], version: int, definition: CustomDefinition | None) -> bool:
        current = self._entries.get(key)
        if current is not None and current.version > version:
            return False
        self._entries[key] = _Entry(version, definition, self._generation)
        return True

    def _compile(self, document: Mapping[str, Any]) -> CustomDefinition | None:
        """A definition without a rule, or with one that no longer validates, arms nothing."""
        rule = document.get("triggerRule")
        if not rule:
            return None
        try:
            compiled = compile_trigger_rule(rule)
        except RuleValidationError as error:
            log.warning(
                "trigger_rule_invalid",
                tenant_id=document.get("tenantId"),
                event_type=document.get("eventType"),
                error=str(error),
            )
            return None
        return CustomDefinition(
            tenant_id=str(document["tenantId"]),
            event_type=str(document["eventType"]),
            category=str(document.get("category", "Custom")),
            severity=Severity(document.get("severity", Severity.INFO)),
            rule=compiled,
            version=int(document.get("version", 0)),
        )

    def _rebuild_index(self) -> None:
        armed: dict[tuple[str, str], list[CustomDefinition]] = {}
        for entry in self._entries.values():
            definition = entry.definition
            if definition is None:
                continue
            for source in definition.rule.source_events:
                armed.setdefault((definition.tenant_id, source), []).append(definition)
        self._armed = {key: tuple(sorted(value, key=lambda d: d.event_type)) for key, value in armed.items()}
