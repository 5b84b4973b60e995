"""Pure tests of the trigger's definition cache and CUSTOM event derivation."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aforo.shared.config_changes import ConfigChange, ConfigKind, ConfigOperation
from aforo.shared.envelope import EventEnvelope
from aforo.trigger.definitions import DefinitionCache
from aforo.trigger.derivation import derive_custom_events

WHALE_RULE = {
    "sourceEvents": ["INVOICE_GENERATED"],
    "match": {
        "all": [
            {"field": "amountDue", "op": "gte", "value": 10000},
            {"not": {"field": "currency", "op": "in", "value": ["JPY", "KRW"]}},
        ]
    },
}


def definition(
    event_type: str = "WHALE_CUSTOMER", version: int = 1, rule: Any = None, tenant: str = "t1"
) -> dict[str, Any]:
    return {
        "tenantId": tenant,
        "eventType": event_type,
        "category": "Custom",
        "severity": "WARNING",
        "triggerRule": WHALE_RULE if rule is None else rule,
        "version": version,
    }


def change(
    document: dict[str, Any] | None,
    version: int,
    operation: ConfigOperation = ConfigOperation.UPSERT,
    event_type: str = "WHALE_CUSTOMER",
) -> ConfigChange:
    return ConfigChange(
        kind=ConfigKind.EVENT_DEFINITION,
        tenant_id="t1",
        document_id=event_type,
        operation=operation,
        version=version,
        document=document,
    )


def invoice(
    amount: int, currency: str = "USD", tenant: str = "t1", event_type: str = "INVOICE_GENERATED"
) -> EventEnvelope:
    return EventEnvelope(
        event_id="evt-1",
        event_type=event_type,
        category="Billing",
        severity="INFO",
        tenant_id=tenant,
        customer_id="c1",
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
        payload={"tenantId": tenant, "customerId": "c1", "amountDue": amount, "currency": currency},
    )


def derived_for(cache: DefinitionCache, source: EventEnvelope) -> list[EventEnvelope]:
    return derive_custom_events(source, cache.armed_by(source.tenant_id, source.event_type))


def test_whale_rule_derives_one_event_with_the_derived_id_and_the_verbatim_payload() -> None:
    cache = DefinitionCache()
    cache.apply_snapshot([definition()], cache.begin_snapshot())
    [whale] = derived_for(cache, invoice(12000))
    assert whale.event_id == "evt-1:WHALE_CUSTOMER"
    assert whale.event_type == "WHALE_CUSTOMER"
    assert whale.severity == "WARNING"
    assert whale.category == "Custom"
    assert whale.payload == invoice(12000).payload
    assert (whale.tenant_id, whale.customer_id) == ("t1", "c1")
    assert derived_for(cache, invoice(500)) == []
    assert derived_for(cache, invoice(12000, currency="JPY")) == []


def test_rules_are_tenant_scoped_and_armed_only_by_their_source_events() -> None:
    cache = DefinitionCache()
    cache.apply_snapshot([definition()], cache.begin_snapshot())
    assert derived_for(cache, invoice(12000, tenant="t2")) == []
    assert derived_for(cache, invoice(12000, event_type="PAYMENT_OVERDUE")) == []


def test_custom_events_never_arm_rules() -> None:
    cache = DefinitionCache()
    rule = {"sourceEvents": ["INVOICE_GENERATED"], "match": {"all": []}}
    cache.apply_snapshot([definition(rule=rule)], cache.begin_snapshot())
    custom_source = invoice(1, event_type="WHALE_CUSTOMER")
    assert derive_custom_events(custom_source, cache.armed_by("t1", "INVOICE_GENERATED")) == []


def test_changes_apply_in_version_order_whatever_the_arrival_order() -> None:
    cache = DefinitionCache()
    lowered = {**WHALE_RULE, "match": {"field": "amountDue", "op": "gte", "value": 100}}
    assert cache.apply_change(change(definition(version=1), 1))
    assert cache.apply_change(change(definition(version=2, rule=lowered), 2))
    assert not cache.apply_change(change(definition(version=1), 1))  # stale: ignored
    assert len(derived_for(cache, invoice(500))) == 1
    assert cache.apply_change(change(None, 3, ConfigOperation.DELETE))
    assert derived_for(cache, invoice(12000)) == []
    assert cache.size == 0
    # An older snapshot cannot resurrect a deleted definition.
    generation = cache.begin_snapshot()
    cache.apply_snapshot([definition(version=2)], generation)
    assert derived_for(cache, invoice(12000)) == []


def test_snapshot_removes_definitions_deleted_while_offline_but_keeps_newer_changes() -> None:
    cache = DefinitionCache()
    cache.apply_snapshot([definition("A"), definition("B")], cache.begin_snapshot())
    generation = cache.begin_snapshot()
    cache.apply_change(change(definition("C"), 1, event_type="C"))  # arrives while the snapshot is read
    cache.apply_snapshot([definition("A")], generation)
    assert sorted(d.event_type for d in cache.armed_by("t1", "INVOICE_GENERATED")) == ["A", "C"]


def test_a_stored_rule_that_no_longer_validates_arms_nothing() -> None:
    cache = DefinitionCache()
    broken = {"sourceEvents": ["INVOICE_GENERATED"], "match": {"field": "x", "op": "nope", "value": 1}}
    cache.apply_snapshot([definition(rule=broken)], cache.begin_snapshot())
    assert cache.size == 0
    assert derived_for(cache, invoice(12000)) == []
