"""The catalog and CUSTOM definitions: reserved names, rule and threshold-field checks, the stored shape."""

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from aforo.api.problems import ConflictError, InvalidRequestError, invalid_request_from
from aforo.api.resources.event_definitions.rules import (
    RESERVED_EVENT_TYPES,
    SYSTEM_THRESHOLD_FIELDS,
    EventDefinitionCreate,
    EventDefinitionUpdate,
    check_new_definition,
    custom_definition_view,
    definition_changes,
    display_name_of,
    ensure_custom,
    ensure_valid_rule,
    new_definition_document,
    system_definition_views,
)
from aforo.shared.catalog import MANDATORY_EVENTS, SYSTEM_EVENTS, WEBHOOK_TEST_EVENT
from aforo.shared.delivery import Channel

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
RULE: dict[str, Any] = {
    "sourceEvents": ["INVOICE_GENERATED"],
    "match": {"field": "amountDue", "op": "gte", "value": 1},
}


def create(**overrides: Any) -> EventDefinitionCreate:
    body: dict[str, Any] = {
        "eventType": "WHALE_CUSTOMER",
        "displayName": "Whale",
        "category": "Custom",
        "severity": "WARNING",
        "defaultChannels": ["WEBHOOK", "EMAIL", "WEBHOOK"],
        "triggerRule": RULE,
    }
    body.update(overrides)
    return EventDefinitionCreate.model_validate(body)


def test_every_system_event_has_a_threshold_entry() -> None:
    assert set(SYSTEM_THRESHOLD_FIELDS) == set(SYSTEM_EVENTS)
    assert SYSTEM_THRESHOLD_FIELDS["INVOICE_GENERATED"] == "amountDue"
    assert SYSTEM_THRESHOLD_FIELDS["TRIAL_EXPIRED"] is None


def test_system_rows_follow_the_catalog() -> None:
    rows = system_definition_views()

    assert [row.event_type for row in rows] == list(SYSTEM_EVENTS)
    assert {row.event_type for row in rows if row.mandatory} == MANDATORY_EVENTS
    assert all(row.default_channels == [Channel.WEBHOOK] and row.version is None for row in rows)
    assert display_name_of("WALLET_BALANCE_DEPLETED") == "Wallet balance depleted"


@pytest.mark.parametrize("event_type", [*SYSTEM_EVENTS, WEBHOOK_TEST_EVENT])
def test_reserved_names_cannot_be_defined_or_changed(event_type: str) -> None:
    with pytest.raises(ConflictError) as defined:
        check_new_definition(create(eventType=event_type))
    with pytest.raises(ConflictError) as changed:
        ensure_custom(event_type)

    assert (defined.value.code, defined.value.field) == ("event_type_exists", "eventType")
    assert changed.value.code == "read_only_event_type"
    assert event_type in RESERVED_EVENT_TYPES


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        (
            {"sourceEvents": ["INVOICE_GENERATED"], "match": {"all": [RULE["match"], {"not": {"op": "x"}}]}},
            "triggerRule.match.all[1].not.field",
        ),
        ({"sourceEvents": ["WHALE_CUSTOMER"], "match": {"all": []}}, "triggerRule.sourceEvents[0]"),
        ({"sourceEvents": ["INVOICE_GENERATED"], "match": {"all": []}, "extra": 1}, "triggerRule.extra"),
        (
            {"sourceEvents": ["INVOICE_GENERATED"], "match": {"field": "a", "op": "regex", "value": "("}},
            "triggerRule.match.value",
        ),
    ],
)
def test_a_rule_problem_names_its_path_inside_the_rule(rule: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        ensure_valid_rule(rule)

    assert (refused.value.code, refused.value.field) == ("invalid_trigger_rule", field)


def test_an_oversized_rule_is_blamed_on_the_whole_rule() -> None:
    huge = {"sourceEvents": ["INVOICE_GENERATED"], "match": {"field": "a", "op": "eq", "value": "x" * 20_000}}

    with pytest.raises(InvalidRequestError) as refused:
        ensure_valid_rule(huge)

    assert refused.value.field == "triggerRule"


@pytest.mark.parametrize("path", ["usage.percent", "lines[0].amount", "a"])
def test_a_valid_threshold_field_is_accepted(path: str) -> None:
    check_new_definition(create(thresholdField=path))


@pytest.mark.parametrize("path", ["a..b", "lines[x]", "lines[01]", "a["])
def test_a_malformed_threshold_field_is_refused(path: str) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        check_new_definition(create(thresholdField=path))

    assert refused.value.field == "thresholdField"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"eventType": "1STARTS_WITH_DIGIT"}, "eventType"),
        ({"eventType": "has/slash"}, "eventType"),
        ({"eventType": "x" * 129}, "eventType"),
        ({"severity": "info"}, "severity"),
        ({"category": 3}, "category"),
        ({"defaultChannels": "WEBHOOK"}, "defaultChannels"),
        ({"triggerRule": "rule"}, "triggerRule"),
        ({"thresholdField": ""}, "thresholdField"),
        ({"tenantId": "t2"}, "tenantId"),
    ],
)
def test_schema_errors_name_the_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as error:
        create(**overrides)

    assert invalid_request_from(error.value).field == field


def test_the_stored_document_has_the_shape_the_dispatcher_reads() -> None:
    document = new_definition_document("t1", create(thresholdField="amountDue"), version=7, now=NOW)

    assert document == {
        "tenantId": "t1",
        "eventType": "WHALE_CUSTOMER",
        "displayName": "Whale",
        "category": "Custom",
        "severity": "WARNING",
        "defaultChannels": ["WEBHOOK", "EMAIL"],
        "triggerRule": RULE,
        "thresholdField": "amountDue",
        "version": 7,
        "createdAt": NOW,
        "updatedAt": NOW,
    }
    view = custom_definition_view(document).to_wire()
    assert (view["source"], view["mandatory"], view["version"], view["createdAt"]) == (
        "CUSTOM",
        False,
        7,
        "2026-11-23T09:00:00.000Z",
    )


def test_a_patch_sets_only_what_it_names_and_null_clears_the_optional_fields() -> None:
    body = EventDefinitionUpdate.model_validate(
        {"severity": "CRITICAL", "triggerRule": None, "thresholdField": None}
    )

    assert definition_changes(body) == {"severity": "CRITICAL", "triggerRule": None, "thresholdField": None}
    assert definition_changes(EventDefinitionUpdate.model_validate({"displayName": "x"})) == {
        "displayName": "x"
    }
    with pytest.raises(InvalidRequestError):
        definition_changes(EventDefinitionUpdate.model_validate({}))


@pytest.mark.parametrize("field", ["displayName", "category", "severity", "defaultChannels"])
def test_a_patch_cannot_null_a_required_field(field: str) -> None:
    with pytest.raises(ValidationError) as error:
        EventDefinitionUpdate.model_validate({field: None})

    assert invalid_request_from(error.value).field == field


def test_the_patch_schema_does_not_offer_null_for_required_fields() -> None:
    properties = EventDefinitionUpdate.model_json_schema(by_alias=True)["properties"]

    assert properties["displayName"]["type"] == "string"
    assert "anyOf" not in properties["severity"]
    assert {"type": "null"} in properties["triggerRule"]["anyOf"]
