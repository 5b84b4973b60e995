"""`/api/v1/webhook-endpoints`: registration, listing, changes and rotation, removal and the test probe."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest

from aforo.shared.dispatch_requests import DispatchRequest
from tests.integration.api.calls import (
    ENDPOINTS,
    changes_of,
    endpoint_body,
    register,
)
from tests.support.api_harness import ApiUnderTest
from tests.support.kafka import TopicReader


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
