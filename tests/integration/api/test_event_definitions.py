"""`/api/v1/admin/event-definitions`: the catalog, CUSTOM definitions and the config changes they publish."""

from __future__ import annotations

from typing import Any

import pytest

from aforo.shared.catalog import MANDATORY_EVENTS, SYSTEM_EVENTS
from tests.integration.api.calls import (
    DEFINITIONS,
    WHALE_RULE,
    changes_of,
    define,
    definition_body,
    unique,
)
from tests.support.api_harness import ApiUnderTest
from tests.support.kafka import TopicReader


async def test_catalog_lists_every_system_event_then_the_tenants_custom_rows(api: ApiUnderTest) -> None:
    event_type = unique("WHALE")
    await define(api, event_type)
    await define(api, unique("OTHER_TENANTS"), tenant="t-elsewhere")

    reply = await api.call("GET", DEFINITIONS)

    assert reply.status == 200
    items = reply.json()["items"]
    system = [item for item in items if item["source"] == "SYSTEM"]
    custom = [item for item in items if item["source"] == "CUSTOM"]
    assert [item["eventType"] for item in system] == list(SYSTEM_EVENTS)
    assert {item["eventType"] for item in system if item["mandatory"]} == MANDATORY_EVENTS
    overdue = next(item for item in system if item["eventType"] == "PAYMENT_OVERDUE")
    assert overdue == {
        "eventType": "PAYMENT_OVERDUE",
        "displayName": "Payment overdue",
        "category": "Billing",
        "severity": "CRITICAL",
        "defaultChannels": ["WEBHOOK"],
        "triggerRule": None,
        "thresholdField": "amountDue",
        "mandatory": True,
        "source": "SYSTEM",
        "version": None,
        "createdAt": None,
        "updatedAt": None,
    }
    assert event_type in [item["eventType"] for item in custom]
    assert all(not item["eventType"].startswith("OTHER_TENANTS") for item in custom)


async def test_create_definition_stores_the_documented_shape_and_publishes_a_change(
    api: ApiUnderTest, config_changes: TopicReader
) -> None:
    event_type = unique("WHALE")

    reply = await api.call("POST", DEFINITIONS, json=definition_body(event_type, thresholdField="amountDue"))

    assert reply.status == 201
    assert reply.headers["Location"] == f"{DEFINITIONS}/{event_type}"
    created = reply.json()
    assert created["source"] == "CUSTOM"
    assert created["mandatory"] is False
    assert created["triggerRule"] == WHALE_RULE
    assert created["defaultChannels"] == ["WEBHOOK", "EMAIL"]
    stored = await api.mongo.collection("event_definitions").find_one(
        {"tenantId": "t1", "eventType": event_type}
    )
    assert stored is not None
    assert set(stored) - {"_id"} == {
        "tenantId",
        "eventType",
        "displayName",
        "category",
        "severity",
        "defaultChannels",
        "triggerRule",
        "thresholdField",
        "version",
        "createdAt",
        "updatedAt",
    }
    assert stored["version"] == created["version"] >= 1
    (change,) = await changes_of(config_changes, "t1", event_type, 1)
    assert change.kind.value == "event_definition"
    assert change.operation.value == "upsert"
    assert change.version == created["version"]
    assert change.key == f"event_definition:t1:{event_type}".encode()
    assert change.document is not None
    assert change.document["triggerRule"] == WHALE_RULE
    assert change.document["severity"] == "WARNING"
    assert change.document["category"] == "Custom"


@pytest.mark.parametrize("taken", ["INVOICE_GENERATED", "PAYMENT_OVERDUE", "webhook.test", "EXISTING"])
async def test_create_definition_refuses_a_type_that_exists(api: ApiUnderTest, taken: str) -> None:
    event_type = unique("EXISTING") if taken == "EXISTING" else taken
    if taken == "EXISTING":
        await define(api, event_type)

    reply = await api.call("POST", DEFINITIONS, json=definition_body(event_type))

    assert reply.status == 409
    assert reply.error["code"] == "event_type_exists"
    assert reply.error["field"] == "eventType"


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        (
            {
                "sourceEvents": ["INVOICE_GENERATED"],
                "match": {"all": [WHALE_RULE["match"], {"not": {"op": "bogus"}}]},
            },
            "triggerRule.match.all[1].not.field",
        ),
        (
            {
                "sourceEvents": ["INVOICE_GENERATED"],
                "match": {"any": [{"field": "amountDue", "op": "in", "value": 5}]},
            },
            "triggerRule.match.any[0].value",
        ),
        (
            {"sourceEvents": ["INVOICE_GENERATED", "TYPO"], "match": {"all": []}},
            "triggerRule.sourceEvents[1]",
        ),
        ({"sourceEvents": ["WHALE_CUSTOMER"], "match": {"all": []}}, "triggerRule.sourceEvents[0]"),
        ({"match": {"all": []}}, "triggerRule.sourceEvents"),
    ],
)
async def test_an_invalid_trigger_rule_is_422_naming_its_path_inside_the_rule(
    api: ApiUnderTest, rule: dict[str, Any], field: str
) -> None:
    event_type = unique()

    reply = await api.call("POST", DEFINITIONS, json=definition_body(event_type, triggerRule=rule))

    assert reply.status == 422
    assert reply.error["code"] == "invalid_trigger_rule"
    assert reply.error["field"] == field
    assert await api.mongo.collection("event_definitions").find_one({"eventType": event_type}) is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"eventType": "has space"}, "eventType"),
        ({"eventType": "a:b"}, "eventType"),
        ({"category": "Marketing"}, "category"),
        ({"severity": "info"}, "severity"),
        ({"defaultChannels": ["FAX"]}, "defaultChannels[0]"),
        ({"displayName": ""}, "displayName"),
        ({"thresholdField": "lines[x]"}, "thresholdField"),
        ({"triggerRule": ["not", "an", "object"]}, "triggerRule"),
        ({"unexpected": 1}, "unexpected"),
    ],
)
async def test_a_definition_of_the_wrong_shape_is_422_naming_the_field(
    api: ApiUnderTest, change: dict[str, Any], field: str
) -> None:
    body = definition_body(unique(), **change)

    reply = await api.call("POST", DEFINITIONS, json=body)

    assert reply.status == 422
    assert reply.error["field"] == field


async def test_patch_definition_updates_bumps_the_version_and_publishes(
    api: ApiUnderTest, config_changes: TopicReader
) -> None:
    event_type = unique("WHALE")
    created = await define(api, event_type, thresholdField="amountDue")

    reply = await api.call(
        "PATCH", f"{DEFINITIONS}/{event_type}", json={"severity": "CRITICAL", "thresholdField": None}
    )

    assert reply.status == 200
    updated = reply.json()
    assert updated["severity"] == "CRITICAL"
    assert updated["thresholdField"] is None
    assert updated["triggerRule"] == WHALE_RULE  # untouched
    assert updated["version"] > created["version"]
    assert updated["createdAt"] == created["createdAt"]
    changes = await changes_of(config_changes, "t1", event_type, 2)
    assert changes[-1].version == updated["version"]
    assert changes[-1].document is not None
    assert changes[-1].document["severity"] == "CRITICAL"

    removed = await api.call("PATCH", f"{DEFINITIONS}/{event_type}", json={"triggerRule": None})
    assert removed.status == 200
    assert removed.json()["triggerRule"] is None


async def test_patch_definition_refusals(api: ApiUnderTest) -> None:
    event_type = unique()
    await define(api, event_type)

    system = await api.call("PATCH", f"{DEFINITIONS}/INVOICE_GENERATED", json={"severity": "INFO"})
    assert (system.status, system.error["code"]) == (409, "read_only_event_type")
    unknown = await api.call("PATCH", f"{DEFINITIONS}/{unique()}", json={"severity": "INFO"})
    assert (unknown.status, unknown.error["code"]) == (404, "event_definition_not_found")
    empty = await api.call("PATCH", f"{DEFINITIONS}/{event_type}", json={})
    assert empty.status == 422
    null = await api.call("PATCH", f"{DEFINITIONS}/{event_type}", json={"displayName": None})
    assert (null.status, null.error["field"]) == (422, "displayName")
    renamed = await api.call("PATCH", f"{DEFINITIONS}/{event_type}", json={"eventType": "NEW_NAME"})
    assert (renamed.status, renamed.error["field"]) == (422, "eventType")
    bad_rule = await api.call(
        "PATCH",
        f"{DEFINITIONS}/{event_type}",
        json={"triggerRule": {"sourceEvents": [], "match": {"all": []}}},
    )
    assert (bad_rule.status, bad_rule.error["field"]) == (422, "triggerRule.sourceEvents")


async def test_delete_definition_publishes_a_delete_above_every_version_and_a_redefinition_goes_higher(
    api: ApiUnderTest, config_changes: TopicReader
) -> None:
    event_type = unique("GONE")
    created = await define(api, event_type)
    await api.call("PATCH", f"{DEFINITIONS}/{event_type}", json={"displayName": "Renamed"})

    reply = await api.call("DELETE", f"{DEFINITIONS}/{event_type}")

    assert reply.status == 204
    assert reply.body == b""
    changes = await changes_of(config_changes, "t1", event_type, 3)
    deletion = changes[-1]
    assert deletion.operation.value == "delete"
    assert deletion.document is None
    assert deletion.version > max(change.version for change in changes[:-1])
    assert (await api.call("DELETE", f"{DEFINITIONS}/{event_type}")).status == 404
    assert (await api.call("PATCH", f"{DEFINITIONS}/{event_type}", json={"severity": "INFO"})).status == 404

    again = await define(api, event_type)
    assert again["version"] > deletion.version > created["version"]


async def test_delete_definition_refuses_system_rows(api: ApiUnderTest) -> None:
    reply = await api.call("DELETE", f"{DEFINITIONS}/SERVICE_DEGRADATION")

    assert (reply.status, reply.error["code"]) == (409, "read_only_event_type")
