"""The API's routes on a real process, broker and SecantusDB: every route and status code, the
config changes each write publishes, the envelopes and dispatch requests it sends, the delivery
log's paging. Roles and tenant isolation are in test_api_access.py, secrets in test_api_secrets.py,
the OpenAPI contract in test_api_openapi.py."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio

from aforo.shared.catalog import MANDATORY_EVENTS, SYSTEM_EVENTS
from aforo.shared.config_changes import ConfigChange
from aforo.shared.dispatch_requests import DispatchRequest
from aforo.shared.envelope import EventEnvelope
from aforo.shared.serde import dumps_json
from tests.support.api_harness import ApiUnderTest, start_api
from tests.support.kafka import TopicReader
from tests.support.stack import LocalStack

DEFINITIONS = "/api/v1/admin/event-definitions"
ENDPOINTS = "/api/v1/webhook-endpoints"
PREFERENCES = "/api/v1/notification-preferences"
DELIVERY_LOGS = "/internal/v1/delivery-logs/by-customer"
WHALE_RULE: dict[str, Any] = {
    "sourceEvents": ["INVOICE_GENERATED"],
    "match": {"all": [{"field": "amountDue", "op": "gte", "value": 10000}]},
}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api(local_stack: LocalStack, service_log_dir: Any) -> AsyncIterator[ApiUnderTest]:
    async with start_api(local_stack, service_log_dir) as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def config_changes(api: ApiUnderTest) -> AsyncIterator[TopicReader]:
    async with api.reader(api.topics.config_changes) as reader:
        yield reader


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def custom_events(api: ApiUnderTest) -> AsyncIterator[TopicReader]:
    async with api.reader(api.topics.custom_events) as reader:
        yield reader


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def dispatch_requests(api: ApiUnderTest) -> AsyncIterator[TopicReader]:
    async with api.reader(api.topics.dispatch_requests) as reader:
        yield reader


def unique(prefix: str = "EVT") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8].upper()}"


def definition_body(event_type: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "eventType": event_type,
        "displayName": "Whale customer",
        "category": "Custom",
        "severity": "WARNING",
        "defaultChannels": ["WEBHOOK", "EMAIL"],
        "triggerRule": WHALE_RULE,
    }
    body.update(overrides)
    return body


async def define(api: ApiUnderTest, event_type: str, tenant: str = "t1", **overrides: Any) -> dict[str, Any]:
    reply = await api.call("POST", DEFINITIONS, tenant=tenant, json=definition_body(event_type, **overrides))
    assert reply.status == 201, reply.body
    created: dict[str, Any] = reply.json()
    return created


def endpoint_body(customer: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "endCustomerId": customer,
        "url": f"https://hooks.example.com/{uuid.uuid4().hex}",
        "events": ["INVOICE_GENERATED", "*"],
        "secret": f"whsec_{uuid.uuid4().hex}",
    }
    body.update(overrides)
    return body


async def register(api: ApiUnderTest, customer: str, tenant: str = "t1", **overrides: Any) -> dict[str, Any]:
    reply = await api.call("POST", ENDPOINTS, tenant=tenant, json=endpoint_body(customer, **overrides))
    assert reply.status == 201, reply.body
    created: dict[str, Any] = reply.json()
    return created


async def changes_of(reader: TopicReader, tenant: str, document_id: str, count: int) -> list[ConfigChange]:
    """The config changes of one document, once `count` of them have landed."""

    def mine(records: list[Any]) -> list[ConfigChange]:
        parsed = [ConfigChange.from_json_bytes(record.value) for record in records]
        return [
            change for change in parsed if change.tenant_id == tenant and change.document_id == document_id
        ]

    await reader.until(lambda records: len(mine(records)) >= count, timeout=10)
    return mine(reader.records)


# ----------------------------------------------------------------------------- event definitions


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


# ----------------------------------------------------------------------------- manual emit


async def test_emit_publishes_the_envelope_then_answers_202_without_a_body(
    api: ApiUnderTest, custom_events: TopicReader
) -> None:
    event_type = unique("WHALE")
    await define(api, event_type, severity="CRITICAL", category="Billing")
    payload = {"amountDue": 2**62, "ratio": 0.1, "nested": {"list": [1, "two", None]}, "name": "Zoë ✓"}

    reply = await api.call(
        "POST",
        f"/api/v1/notification-event-definitions/{event_type}/emit",
        json={"customerId": "c9", "payload": payload},
    )

    assert reply.status == 202
    assert reply.body == b""
    event_id = reply.headers["X-Aforo-Event-Id"]
    await custom_events.until(
        lambda records: any(f'"{event_id}"'.encode() in r.value for r in records), timeout=10
    )
    record = next(r for r in custom_events.records if f'"{event_id}"'.encode() in r.value)
    assert record.key == b"t1:c9"
    envelope = EventEnvelope.from_json_bytes(record.value)
    assert uuid.UUID(envelope.event_id).version == 4
    assert (envelope.event_type, envelope.category, envelope.severity.value) == (
        event_type,
        "Billing",
        "CRITICAL",
    )
    assert (envelope.tenant_id, envelope.customer_id) == ("t1", "c9")
    assert abs(envelope.occurred_at - datetime.now(UTC)) < timedelta(seconds=30)
    assert envelope.payload == payload
    assert dumps_json(payload) in record.value  # verbatim bytes: no re-typing of 2**62 or 0.1


@pytest.mark.parametrize("event_type", ["NO_SUCH_EVENT", "INVOICE_GENERATED", "webhook.test"])
async def test_emit_of_anything_but_a_custom_definition_is_404(api: ApiUnderTest, event_type: str) -> None:
    reply = await api.call(
        "POST",
        f"/api/v1/notification-event-definitions/{event_type}/emit",
        json={"customerId": "c1", "payload": {}},
    )

    assert (reply.status, reply.error["code"]) == (404, "event_definition_not_found")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"payload": {}}, "customerId"),
        ({"customerId": "c1"}, "payload"),
        ({"customerId": "c1", "payload": [1, 2]}, "payload"),
        ({"customerId": "", "payload": {}}, "customerId"),
        ({"customerId": "c1", "tenantId": "t2", "payload": {}}, "tenantId"),
    ],
)
async def test_emit_body_errors_are_422(api: ApiUnderTest, body: dict[str, Any], field: str) -> None:
    event_type = unique()
    await define(api, event_type)

    reply = await api.call("POST", f"/api/v1/notification-event-definitions/{event_type}/emit", json=body)

    assert (reply.status, reply.error["field"]) == (422, field)


# ----------------------------------------------------------------------------- webhook endpoints


async def test_register_endpoint_stores_it_encrypted_and_answers_without_the_secret(
    api: ApiUnderTest, config_changes: TopicReader
) -> None:
    body = endpoint_body("c-reg", maxRetryAttempts=5, initialBackoffSeconds=0.5, backoffMultiplier=3)

    reply = await api.call("POST", ENDPOINTS, json=body)

    assert reply.status == 201
    created = reply.json()
    endpoint_id = created["endpointId"]
    assert uuid.UUID(endpoint_id).version == 4
    assert reply.headers["Location"] == f"{ENDPOINTS}/{endpoint_id}"
    assert created["events"] == ["INVOICE_GENERATED", "*"]
    assert (created["maxRetryAttempts"], created["initialBackoffSeconds"], created["backoffMultiplier"]) == (
        5,
        0.5,
        3.0,
    )
    assert created["active"] is True
    assert created["disabledReason"] is None
    assert "secret" not in created
    assert "secrets" not in created
    assert created["signingSecrets"] == [{"createdAt": created["createdAt"], "retiresAt": None}]
    assert body["secret"].encode() not in reply.body

    stored = await api.mongo.collection("webhook_endpoints").find_one({"endpointId": endpoint_id})
    assert stored is not None
    assert set(stored) - {"_id"} == {
        "endpointId",
        "tenantId",
        "endCustomerId",
        "url",
        "events",
        "active",
        "secrets",
        "maxRetryAttempts",
        "initialBackoffSeconds",
        "backoffMultiplier",
        "version",
        "createdAt",
        "updatedAt",
        "disabledReason",
    }
    assert (stored["tenantId"], stored["version"], stored["url"]) == ("t1", 1, body["url"])
    (secret,) = stored["secrets"]
    assert set(secret) == {"ciphertext", "createdAt", "retiresAt"}
    assert body["secret"] not in secret["ciphertext"]
    assert api.secret_box.decrypt(secret["ciphertext"]) == body["secret"]

    (change,) = await changes_of(config_changes, "t1", endpoint_id, 1)
    assert change.kind.value == "webhook_endpoint"
    assert change.version == 1
    assert change.document is not None
    assert "secrets" not in change.document
    assert change.document["url"] == body["url"]


async def test_register_endpoint_defaults_and_a_duplicate_url_per_customer(api: ApiUnderTest) -> None:
    body = endpoint_body("c-dup")
    first = await api.call("POST", ENDPOINTS, json=body)
    assert first.status == 201
    assert (first.json()["maxRetryAttempts"], first.json()["initialBackoffSeconds"]) == (3, 2.0)
    assert first.json()["backoffMultiplier"] == 2.0

    again = await api.call("POST", ENDPOINTS, json={**body, "secret": f"whsec_{uuid.uuid4().hex}"})
    assert (again.status, again.error["code"], again.error["field"]) == (409, "endpoint_url_exists", "url")

    other_customer = await api.call("POST", ENDPOINTS, json={**body, "endCustomerId": "c-dup-2"})
    assert other_customer.status == 201
    other_tenant = await api.call("POST", ENDPOINTS, tenant="t-dup", json=body)
    assert other_tenant.status == 201


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"url": "ftp://hooks.example.com/x"}, "url"),
        ({"url": "https://user:pass@hooks.example.com/x"}, "url"),
        ({"url": "https://hooks.example.com/x#frag"}, "url"),
        ({"url": "https:///no-host"}, "url"),
        ({"url": "https://hooks.example.com:99999/"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"events": []}, "events"),
        ({"events": ["bad event"]}, "events[0]"),
        ({"secret": "short"}, "secret"),
        ({"maxRetryAttempts": 0}, "maxRetryAttempts"),
        ({"maxRetryAttempts": 11}, "maxRetryAttempts"),
        ({"maxRetryAttempts": "3"}, "maxRetryAttempts"),
        ({"initialBackoffSeconds": 3601}, "initialBackoffSeconds"),
        ({"backoffMultiplier": 0.5}, "backoffMultiplier"),
        ({"endCustomerId": ""}, "endCustomerId"),
        ({"active": False}, "active"),
    ],
)
async def test_register_endpoint_refuses_bad_fields_with_422(
    api: ApiUnderTest, change: dict[str, Any], field: str
) -> None:
    reply = await api.call("POST", ENDPOINTS, json=endpoint_body("c-bad", **change))

    assert reply.status == 422
    assert reply.error["field"] == field


async def test_list_endpoints_is_one_customers_oldest_first(api: ApiUnderTest) -> None:
    first = await register(api, "c-list")
    second = await register(api, "c-list")
    await register(api, "c-list-other")
    await register(api, "c-list", tenant="t-list-elsewhere")

    reply = await api.call("GET", ENDPOINTS, params={"endCustomerId": "c-list"})

    assert reply.status == 200
    assert [item["endpointId"] for item in reply.json()["items"]] == [
        first["endpointId"],
        second["endpointId"],
    ]
    assert reply.json()["items"][0] == first
    missing = await api.call("GET", ENDPOINTS)
    assert (missing.status, missing.error["field"]) == (422, "endCustomerId")


async def test_patch_endpoint_changes_flags_and_retry_policy(
    api: ApiUnderTest, config_changes: TopicReader
) -> None:
    created = await register(api, "c-patch")
    path = f"{ENDPOINTS}/{created['endpointId']}"

    disabled = await api.call(
        "PATCH", path, json={"active": False, "events": ["TRIAL_EXPIRED"], "maxRetryAttempts": 1}
    )
    assert disabled.status == 200
    body = disabled.json()
    assert (body["active"], body["disabledReason"], body["events"]) == (
        False,
        "disabled_by_admin",
        ["TRIAL_EXPIRED"],
    )
    assert (body["maxRetryAttempts"], body["version"]) == (1, 2)
    await api.mongo.collection("webhook_endpoints").update_one(
        {"endpointId": created["endpointId"]}, {"$set": {"disabledReason": "endpoint_gone"}}
    )
    enabled = await api.call(
        "PATCH", path, json={"active": True, "initialBackoffSeconds": 10, "backoffMultiplier": 1.5}
    )
    assert enabled.status == 200
    assert (enabled.json()["active"], enabled.json()["disabledReason"], enabled.json()["version"]) == (
        True,
        None,
        3,
    )
    assert (enabled.json()["initialBackoffSeconds"], enabled.json()["backoffMultiplier"]) == (10.0, 1.5)
    changes = await changes_of(config_changes, "t1", created["endpointId"], 3)
    assert [change.version for change in changes] == [1, 2, 3]

    for bad, field in (({}, None), ({"url": "https://x.example"}, "url"), ({"active": None}, "active")):
        reply = await api.call("PATCH", path, json=bad)
        assert (reply.status, reply.error.get("field")) == (422, field)
    unknown = await api.call("PATCH", f"{ENDPOINTS}/{uuid.uuid4()}", json={"active": False})
    assert (unknown.status, unknown.error["code"]) == (404, "endpoint_not_found")


async def test_a_new_secret_is_a_rotation_with_the_configured_overlap(api: ApiUnderTest) -> None:
    old_secret, new_secret = f"whsec_{uuid.uuid4().hex}", f"whsec_{uuid.uuid4().hex}"
    created = await register(api, "c-rotate", secret=old_secret)

    reply = await api.call("PATCH", f"{ENDPOINTS}/{created['endpointId']}", json={"secret": new_secret})

    assert reply.status == 200
    assert new_secret.encode() not in reply.body
    rotated = reply.json()
    assert rotated["signingSecrets"][1]["createdAt"] == created["createdAt"]
    newest, previous = rotated["signingSecrets"]
    assert newest["retiresAt"] is None
    retires = datetime.fromisoformat(previous["retiresAt"].replace("Z", "+00:00"))
    updated = datetime.fromisoformat(rotated["updatedAt"].replace("Z", "+00:00"))
    assert retires - updated == timedelta(seconds=3600)  # AFORO_API_SECRET_ROTATION_OVERLAP_SECONDS
    stored = await api.mongo.collection("webhook_endpoints").find_one({"endpointId": created["endpointId"]})
    assert stored is not None
    assert [api.secret_box.decrypt(secret["ciphertext"]) for secret in stored["secrets"]] == [
        new_secret,
        old_secret,
    ]


async def test_delete_endpoint_is_204_and_publishes_a_delete(
    api: ApiUnderTest, config_changes: TopicReader
) -> None:
    created = await register(api, "c-delete")
    path = f"{ENDPOINTS}/{created['endpointId']}"

    reply = await api.call("DELETE", path)

    assert (reply.status, reply.body) == (204, b"")
    assert (
        await api.mongo.collection("webhook_endpoints").find_one({"endpointId": created["endpointId"]})
        is None
    )
    changes = await changes_of(config_changes, "t1", created["endpointId"], 2)
    assert (changes[-1].operation.value, changes[-1].version, changes[-1].document) == ("delete", 2, None)
    assert (await api.call("DELETE", path)).status == 404


async def test_webhook_test_sends_a_probe_aimed_at_the_endpoint(
    api: ApiUnderTest, dispatch_requests: TopicReader
) -> None:
    created = await register(api, "c-probe", events=["INVOICE_GENERATED"])
    await api.call("PATCH", f"{ENDPOINTS}/{created['endpointId']}", json={"active": False})

    reply = await api.call("POST", f"{ENDPOINTS}/{created['endpointId']}/test")

    assert (reply.status, reply.body) == (202, b"")
    event_id = reply.headers["X-Aforo-Event-Id"]
    await dispatch_requests.until(
        lambda records: any(event_id.encode() in r.value for r in records), timeout=10
    )
    record = next(r for r in dispatch_requests.records if event_id.encode() in r.value)
    assert record.key == b"t1:c-probe"
    request = DispatchRequest.from_json_bytes(record.value)
    assert (request.kind.value, request.endpoint_id, request.tenant_id) == (
        "test",
        created["endpointId"],
        "t1",
    )
    assert request.replay_of is None
    assert request.envelope.event_type == "webhook.test"
    assert (request.envelope.category, request.envelope.severity.value) == ("Custom", "INFO")
    assert request.envelope.payload == {
        "endpointId": created["endpointId"],
        "message": "This is a test event from aforo-notify.",
    }
    assert (await api.call("POST", f"{ENDPOINTS}/{uuid.uuid4()}/test")).status == 404


# ----------------------------------------------------------------------------- preferences


async def test_preferences_put_and_read_back_for_the_tokens_customer(
    api: ApiUnderTest, config_changes: TopicReader
) -> None:
    customer = f"c-pref-{uuid.uuid4().hex[:6]}"
    empty = await api.portal("GET", PREFERENCES, customer=customer)
    assert (empty.status, empty.json()) == (200, {"items": []})

    body = {
        "eventType": "INVOICE_GENERATED",
        "enabled": True,
        "channels": ["EMAIL", "WEBHOOK"],
        "threshold": 100,
    }
    saved = await api.portal("PUT", PREFERENCES, customer=customer, json={**body, "cooldownMinutes": 30})
    again = await api.portal("PUT", PREFERENCES, customer=customer, json={**body, "enabled": False})
    mandatory = await api.portal(
        "PUT",
        PREFERENCES,
        customer=customer,
        json={"eventType": "PAYMENT_OVERDUE", "enabled": True, "channels": ["SMS"]},
    )

    assert saved.status == again.status == mandatory.status == 200
    assert saved.json() == {
        "eventType": "INVOICE_GENERATED",
        "enabled": True,
        "channels": ["EMAIL", "WEBHOOK"],
        "threshold": 100.0,
        "cooldownMinutes": 30,
        "mandatory": False,
        "version": 1,
        "updatedAt": saved.json()["updatedAt"],
    }
    assert (again.json()["version"], again.json()["enabled"], again.json()["cooldownMinutes"]) == (
        2,
        False,
        None,
    )
    listed = await api.portal("GET", PREFERENCES, customer=customer)
    assert listed.json()["items"] == [again.json(), mandatory.json()]
    assert mandatory.json()["mandatory"] is True
    stored = await api.mongo.collection("notification_preferences").find_one(
        {"tenantId": "t1", "customerId": customer, "eventType": "INVOICE_GENERATED"}, {"_id": 0}
    )
    assert stored is not None
    assert set(stored) == {
        "tenantId",
        "customerId",
        "eventType",
        "enabled",
        "channels",
        "threshold",
        "cooldownMinutes",
        "version",
        "updatedAt",
    }
    changes = await changes_of(config_changes, "t1", f"{customer}:INVOICE_GENERATED", 2)
    assert [change.version for change in changes] == [1, 2]
    assert changes[-1].kind.value == "notification_preference"
    assert changes[-1].document is not None
    assert changes[-1].document["enabled"] is False
    other = await api.portal("GET", PREFERENCES, customer=f"{customer}-other")
    assert other.json() == {"items": []}


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        (
            {"eventType": "PAYMENT_OVERDUE", "enabled": False, "channels": []},
            422,
            "mandatory_event",
            "enabled",
        ),
        (
            {"eventType": "SERVICE_DEGRADATION", "enabled": True, "channels": [], "threshold": 99.9},
            422,
            "mandatory_event",
            "threshold",
        ),
        (
            {"eventType": "WALLET_BALANCE_DEPLETED", "enabled": True, "channels": [], "cooldownMinutes": 5},
            422,
            "mandatory_event",
            "cooldownMinutes",
        ),
        (
            {"eventType": "SUBSCRIPTION_ACTIVATED", "enabled": True, "channels": [], "threshold": 1},
            422,
            "threshold_not_applicable",
            "threshold",
        ),
        (
            {"eventType": "NO_SUCH_TYPE", "enabled": True, "channels": []},
            404,
            "event_type_not_found",
            "eventType",
        ),
        (
            {"eventType": "webhook.test", "enabled": True, "channels": []},
            404,
            "event_type_not_found",
            "eventType",
        ),
        (
            {"eventType": "INVOICE_GENERATED", "enabled": True, "channels": [], "customerId": "someone-else"},
            422,
            "validation_error",
            "customerId",
        ),
        (
            {"eventType": "INVOICE_GENERATED", "enabled": "yes", "channels": []},
            422,
            "validation_error",
            "enabled",
        ),
        (
            {"eventType": "INVOICE_GENERATED", "enabled": True, "channels": ["FAX"]},
            422,
            "validation_error",
            "channels[0]",
        ),
        (
            {"eventType": "INVOICE_GENERATED", "enabled": True, "channels": [], "cooldownMinutes": -1},
            422,
            "validation_error",
            "cooldownMinutes",
        ),
    ],
)
async def test_preference_refusals(
    api: ApiUnderTest, body: dict[str, Any], status: int, code: str, field: str
) -> None:
    reply = await api.portal("PUT", PREFERENCES, customer="c-refused", json=body)

    assert (reply.status, reply.error["code"], reply.error["field"]) == (status, code, field)


async def test_a_custom_event_takes_a_threshold_only_with_a_threshold_field(api: ApiUnderTest) -> None:
    with_field, without_field = unique("METERED"), unique("PLAIN")
    await define(api, with_field, thresholdField="usage.percent")
    await define(api, without_field)
    body: dict[str, Any] = {"enabled": True, "channels": ["WEBHOOK"], "threshold": 80}

    accepted = await api.portal("PUT", PREFERENCES, json={**body, "eventType": with_field})
    refused = await api.portal("PUT", PREFERENCES, json={**body, "eventType": without_field})

    assert accepted.status == 200
    assert (refused.status, refused.error["code"]) == (422, "threshold_not_applicable")


# ----------------------------------------------------------------------------- delivery logs


def log_row(
    tenant: str,
    customer: str,
    created_at: datetime,
    *,
    status: str = "DELIVERED",
    endpoint_id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A row as the dispatcher writes it (`DeliveryLogRow.to_document()` + deliveryId + envelopeJson)."""
    event_id = extra.pop("event_id", str(uuid.uuid4()))
    event_type = extra.pop("event_type", "INVOICE_GENERATED")
    envelope = {
        "eventId": event_id,
        "eventType": event_type,
        "category": "Billing",
        "severity": "INFO",
        "tenantId": tenant,
        "customerId": customer,
        "occurredAt": "2026-01-01T00:00:00.000Z",
        "payload": {"amountDue": 12000},
    }
    row: dict[str, Any] = {
        "deliveryId": str(uuid.uuid4()),
        "tenantId": tenant,
        "endCustomerId": customer,
        "eventId": event_id,
        "eventType": event_type,
        "channel": "WEBHOOK",
        "endpointId": endpoint_id,
        "attempt": 0 if status == "SKIPPED" else 1,
        "status": status,
        "skipReason": "endpoint_filter" if status == "SKIPPED" else None,
        "error": "HTTP 500" if status == "FAILED" else None,
        "responseStatus": 500 if status == "FAILED" else 200,
        "responseBody": "oops",
        "durationMs": 12.5,
        "createdAt": created_at,
        "nextAttemptAt": None,
        "envelopeJson": json.dumps(envelope, separators=(",", ":")),
    }
    row.update(extra)
    return row


async def test_delivery_logs_are_newest_first_and_cursor_paging_covers_every_row_once(
    api: ApiUnderTest,
) -> None:
    customer = f"c-logs-{uuid.uuid4().hex[:6]}"
    base = datetime(2026, 3, 1, tzinfo=UTC)
    # Pairs share a createdAt, so the _id tie-break is exercised.
    rows = [log_row("t1", customer, base + timedelta(seconds=index // 2)) for index in range(9)]
    noise = [log_row("t1", "c-someone-else", base), log_row("t-other", customer, base)]
    await api.mongo.collection("delivery_logs").insert_many(rows + noise)
    expected = [
        row["deliveryId"]
        for row in sorted(rows, key=lambda row: (row["createdAt"], row["_id"]), reverse=True)
    ]

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"endCustomerId": customer, "limit": "4", **({"cursor": cursor} if cursor else {})}
        reply = await api.call("GET", DELIVERY_LOGS, params=params)
        assert reply.status == 200, reply.body
        page = reply.json()
        seen += [item["deliveryId"] for item in page["items"]]
        pages += 1
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == expected
    assert pages == 3
    item = page["items"][-1]
    assert set(item) == {
        "deliveryId",
        "endCustomerId",
        "eventId",
        "eventType",
        "channel",
        "endpointId",
        "attempt",
        "status",
        "skipReason",
        "error",
        "responseStatus",
        "responseBody",
        "durationMs",
        "createdAt",
        "nextAttemptAt",
        # EMAIL/SMS/PAGERDUTY rows fill these (docs/channels.md); null on a webhook row.
        "destinationId",
        "maskedAddress",
        "providerReference",
        "note",
    }
    assert item["createdAt"] == "2026-03-01T00:00:00.000Z"


async def test_delivery_logs_filters(api: ApiUnderTest) -> None:
    customer = f"c-filter-{uuid.uuid4().hex[:6]}"
    base = datetime(2026, 4, 1, tzinfo=UTC)
    rows = [
        log_row("t1", customer, base, status="FAILED", event_type="TRIAL_EXPIRED"),
        log_row("t1", customer, base + timedelta(hours=1), status="DELIVERED"),
        log_row("t1", customer, base + timedelta(hours=2), status="SKIPPED"),
    ]
    await api.mongo.collection("delivery_logs").insert_many(rows)

    async def ids(**params: str) -> list[str]:
        reply = await api.call("GET", DELIVERY_LOGS, params={"endCustomerId": customer, **params})
        assert reply.status == 200, reply.body
        return [item["deliveryId"] for item in reply.json()["items"]]

    assert await ids(status="FAILED") == [rows[0]["deliveryId"]]
    assert await ids(eventId=rows[1]["eventId"]) == [rows[1]["deliveryId"]]
    assert await ids(eventType="TRIAL_EXPIRED") == [rows[0]["deliveryId"]]
    window = {"from": "2026-04-01T00:30:00Z", "to": "2026-04-01T04:00:00+02:00"}  # 00:30Z .. 02:00Z
    assert await ids(**window) == [rows[1]["deliveryId"]]
    assert await ids(**{"from": "2026-04-01T01:00:00.000Z"}) == [rows[2]["deliveryId"], rows[1]["deliveryId"]]

    for params, field in (
        ({"status": "LOST"}, "status"),
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-04-01T00:00:00"}, "to"),
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"cursor": "garbage!"}, "cursor"),
    ):
        reply = await api.call("GET", DELIVERY_LOGS, params={"endCustomerId": customer, **params})
        assert (reply.status, reply.error["field"]) == (422, field), params
    missing = await api.call("GET", DELIVERY_LOGS)
    assert (missing.status, missing.error["field"]) == (422, "endCustomerId")


# ----------------------------------------------------------------------------- replay and recovery


async def test_replay_sends_the_stored_envelope_again_with_the_same_event_id(
    api: ApiUnderTest, dispatch_requests: TopicReader
) -> None:
    endpoint = await register(api, "c-replay")
    failed = log_row("t1", "c-replay", datetime.now(UTC), status="FAILED", endpoint_id=endpoint["endpointId"])
    skipped = log_row(
        "t1", "c-replay", datetime.now(UTC), status="SKIPPED", endpoint_id=endpoint["endpointId"]
    )
    await api.mongo.collection("delivery_logs").insert_many([failed, skipped])

    for row in (failed, skipped):
        reply = await api.call("POST", f"/api/v1/deliveries/{row['deliveryId']}/replay")
        assert (reply.status, reply.body) == (202, b"")
        assert reply.headers["X-Aforo-Event-Id"] == row["eventId"]

    await dispatch_requests.until(
        lambda records: sum(b'"replayOf"' in r.value and b"c-replay" in r.value for r in records) >= 2,
        timeout=10,
    )
    requests = [
        DispatchRequest.from_json_bytes(r.value) for r in dispatch_requests.records if b"c-replay" in r.value
    ]
    by_origin = {request.replay_of: request for request in requests}
    request = by_origin[failed["deliveryId"]]
    assert (request.kind.value, request.endpoint_id) == ("replay", endpoint["endpointId"])
    assert request.envelope.to_wire() == json.loads(failed["envelopeJson"])
    assert skipped["deliveryId"] in by_origin


async def test_replay_refusals(api: ApiUnderTest) -> None:
    endpoint = await register(api, "c-replay-no")
    now = datetime.now(UTC)
    delivered = log_row("t1", "c-replay-no", now, status="DELIVERED", endpoint_id=endpoint["endpointId"])
    retrying = log_row("t1", "c-replay-no", now, status="RETRYING", endpoint_id=endpoint["endpointId"])
    email = log_row("t1", "c-replay-no", now, status="FAILED", channel="EMAIL")
    orphan = log_row("t1", "c-replay-no", now, status="FAILED", endpoint_id=str(uuid.uuid4()))
    await api.mongo.collection("delivery_logs").insert_many([delivered, retrying, email, orphan])

    for row, code in (
        (delivered, "delivery_not_replayable"),
        (retrying, "delivery_not_replayable"),
        (email, "delivery_not_replayable"),
        (orphan, "endpoint_missing"),
    ):
        reply = await api.call("POST", f"/api/v1/deliveries/{row['deliveryId']}/replay")
        assert (reply.status, reply.error["code"]) == (409, code)
    unknown = await api.call("POST", f"/api/v1/deliveries/{uuid.uuid4()}/replay")
    assert (unknown.status, unknown.error["code"]) == (404, "delivery_not_found")


async def test_recover_replays_each_failed_event_since_once(
    api: ApiUnderTest, dispatch_requests: TopicReader
) -> None:
    endpoint = await register(api, "c-recover")
    endpoint_id = endpoint["endpointId"]
    start = datetime.now(UTC) - timedelta(minutes=30)
    old = log_row("t1", "c-recover", start - timedelta(hours=2), status="FAILED", endpoint_id=endpoint_id)
    twice_a = log_row(
        "t1", "c-recover", start + timedelta(minutes=1), status="FAILED", endpoint_id=endpoint_id
    )
    twice_b = log_row(
        "t1",
        "c-recover",
        start + timedelta(minutes=2),
        status="FAILED",
        endpoint_id=endpoint_id,
        event_id=twice_a["eventId"],
        attempt=2,
    )
    healed = log_row(
        "t1", "c-recover", start + timedelta(minutes=3), status="FAILED", endpoint_id=endpoint_id
    )
    healed_later = log_row(
        "t1",
        "c-recover",
        start + timedelta(minutes=4),
        status="DELIVERED",
        endpoint_id=endpoint_id,
        event_id=healed["eventId"],
        attempt=2,
    )
    lone = log_row("t1", "c-recover", start + timedelta(minutes=5), status="FAILED", endpoint_id=endpoint_id)
    other_endpoint = log_row(
        "t1", "c-recover", start + timedelta(minutes=5), status="FAILED", endpoint_id="x"
    )
    await api.mongo.collection("delivery_logs").insert_many(
        [old, twice_a, twice_b, healed, healed_later, lone, other_endpoint]
    )

    reply = await api.call(
        "POST",
        f"{ENDPOINTS}/{endpoint_id}/recover",
        params={"since": start.isoformat().replace("+00:00", "Z")},
    )

    assert (reply.status, reply.json()) == (202, {"requested": 2})
    await dispatch_requests.until(
        lambda records: sum(endpoint_id.encode() in r.value and b'"replay"' in r.value for r in records) >= 2,
        timeout=10,
    )
    requests = [
        DispatchRequest.from_json_bytes(r.value)
        for r in dispatch_requests.records
        if endpoint_id.encode() in r.value and b'"replay"' in r.value
    ]
    assert [request.replay_of for request in requests] == [twice_b["deliveryId"], lone["deliveryId"]]
    assert {request.envelope.event_id for request in requests} == {twice_a["eventId"], lone["eventId"]}

    until = await api.call(
        "POST",
        f"{ENDPOINTS}/{endpoint_id}/recover",
        params={"since": "2000-01-01T00:00:00Z", "until": start.isoformat()},
    )
    assert until.json() == {"requested": 1}  # the old one only
    for params, field in (
        ({}, "since"),
        ({"since": "last week"}, "since"),
        ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, None),
    ):
        refused = await api.call("POST", f"{ENDPOINTS}/{endpoint_id}/recover", params=params)
        assert (refused.status, refused.error.get("field")) == (422, field), params
    unknown = await api.call(
        "POST", f"{ENDPOINTS}/{uuid.uuid4()}/recover", params={"since": "2026-01-01T00:00:00Z"}
    )
    assert unknown.status == 404


# ----------------------------------------------------------------------------- bodies and unknown routes


async def test_body_size_limit_is_413_and_malformed_json_is_400(api: ApiUnderTest) -> None:
    huge = {
        "customerId": "c1",
        "payload": {"blob": "x" * (64 * 1024)},
    }  # AFORO_API_MAX_REQUEST_BODY_BYTES=64 KiB
    event_type = unique()
    await define(api, event_type)

    too_large = await api.call("POST", f"/api/v1/notification-event-definitions/{event_type}/emit", json=huge)

    async def streamed() -> AsyncIterator[bytes]:  # no Content-Length: cut off while it is read
        yield b'{"x": "'
        for _ in range(70):
            yield b"y" * 1024
        yield b'"}'

    chunked = await api.call("POST", ENDPOINTS, data=streamed(), headers={"Content-Type": "application/json"})
    malformed = await api.call(
        "POST", ENDPOINTS, data=b'{"endCustomerId": ', headers={"Content-Type": "application/json"}
    )
    nan = await api.call(
        "POST", ENDPOINTS, data=b'{"maxRetryAttempts": NaN}', headers={"Content-Type": "application/json"}
    )
    empty = await api.call("POST", ENDPOINTS, data=b"", headers={"Content-Type": "application/json"})
    not_object = await api.call("POST", ENDPOINTS, json=[1, 2, 3])

    assert (too_large.status, too_large.error["code"]) == (413, "payload_too_large")
    assert (chunked.status, chunked.error["code"]) == (413, "payload_too_large")
    assert (malformed.status, malformed.error["code"]) == (400, "malformed_json")
    assert (nan.status, nan.error["code"]) == (400, "malformed_json")
    assert (empty.status, empty.error["code"]) == (400, "malformed_json")
    assert (not_object.status, not_object.error["code"]) == (422, "validation_error")


async def test_unknown_routes_and_methods_answer_json_errors(api: ApiUnderTest) -> None:
    unknown = await api.call("GET", "/api/v1/nothing-here")
    wrong_method = await api.call("PUT", ENDPOINTS, json={})
    anonymous = await api.call("GET", "/api/v1/nothing-here", headers={"Authorization": ""})

    assert (unknown.status, unknown.error["code"]) == (404, "not_found")
    assert (wrong_method.status, wrong_method.error["code"]) == (405, "method_not_allowed")
    assert "POST" in wrong_method.headers["Allow"]
    assert anonymous.status == 401  # unknown paths tell an unauthenticated caller nothing


async def test_openapi_and_health_are_public(api: ApiUnderTest) -> None:
    async with api.session.get(f"{api.process.url}/openapi.json") as response:
        assert response.status == 200
        document = await response.json()
    assert document["openapi"] == "3.1.0"
    assert "/api/v1/webhook-endpoints/{endpointId}/recover" in document["paths"]
