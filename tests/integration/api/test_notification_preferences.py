"""`/api/v1/notification-preferences`: a customer's own preferences and the rules they keep."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.integration.api.calls import (
    PREFERENCES,
    changes_of,
    define,
    unique,
)
from tests.support.api_harness import ApiUnderTest
from tests.support.kafka import TopicReader


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
