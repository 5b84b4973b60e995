"""Who may call what: every route by every role (2xx or 403), and every route walked with another
tenant's ids (404, or an empty list for list routes; never 403, never the other tenant's data)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
import pytest_asyncio
from bson import ObjectId

from aforo.api.route_table import api_operations
from tests.support.api_harness import JWT_SECRET, ApiUnderTest, start_api
from tests.support.delivery_rows import store_rows
from tests.support.stack import LocalStack

ROLES: dict[str, tuple[str, ...]] = {
    "OWNER": ("OWNER",),
    "ADMIN": ("ADMIN",),
    "BILLING_ADMIN": ("BILLING_ADMIN",),
    "CUSTOMER": ("CUSTOMER",),
    "no role": (),
}
CUSTOMER = "c1"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api(local_stack: LocalStack, service_log_dir: Any) -> AsyncIterator[ApiUnderTest]:
    async with start_api(local_stack, service_log_dir) as running:
        yield running


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    json: Any = None
    params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    portal: bool
    prepare: Callable[[ApiUnderTest, str], Awaitable[Call]]
    """Creates what the call needs in `tenant` (as its OWNER) and returns a call that succeeds."""

    @property
    def name(self) -> str:
        return f"{self.method} {self.path}"


def unique(prefix: str = "EVT") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8].upper()}"


async def owner(api: ApiUnderTest, tenant: str, method: str, path: str, **kwargs: Any) -> Any:
    reply = await api.call(method, path, tenant=tenant, roles=("OWNER",), **kwargs)
    assert reply.status < 300, reply.body
    return reply.json() if reply.body else None


async def definition(api: ApiUnderTest, tenant: str) -> str:
    event_type = unique()
    body = {
        "eventType": event_type,
        "displayName": "Custom",
        "category": "Custom",
        "severity": "INFO",
        "defaultChannels": ["WEBHOOK"],
        "thresholdField": "amount",
    }
    await owner(api, tenant, "POST", "/api/v1/admin/event-definitions", json=body)
    return event_type


def endpoint_body(customer: str = CUSTOMER, url: str | None = None) -> dict[str, Any]:
    return {
        "endCustomerId": customer,
        "url": url or f"https://hooks.example.com/{uuid.uuid4().hex}",
        "events": ["*"],
        "secret": f"whsec_{uuid.uuid4().hex}",
    }


async def endpoint(api: ApiUnderTest, tenant: str) -> str:
    created = await owner(api, tenant, "POST", "/api/v1/webhook-endpoints", json=endpoint_body())
    endpoint_id: str = created["endpointId"]
    return endpoint_id


async def failed_delivery(api: ApiUnderTest, tenant: str) -> str:
    endpoint_id = await endpoint(api, tenant)
    delivery_id, event_id = str(uuid.uuid4()), str(uuid.uuid4())
    await store_rows(
        api.mongo,
        [
            {
                "_id": ObjectId(),  # a row written before ids were derived from the key
                "deliveryId": delivery_id,
                "tenantId": tenant,
                "endCustomerId": CUSTOMER,
                "eventId": event_id,
                "eventType": "INVOICE_GENERATED",
                "channel": "WEBHOOK",
                "endpointId": endpoint_id,
                "attempt": 3,
                "status": "FAILED",
                "skipReason": None,
                "error": "HTTP 503",
                "responseStatus": 503,
                "responseBody": None,
                "durationMs": 3.0,
                "createdAt": datetime.now(UTC),
                "nextAttemptAt": None,
                "envelope": {
                    "eventId": event_id,
                    "eventType": "INVOICE_GENERATED",
                    "category": "Billing",
                    "severity": "INFO",
                    "tenantId": tenant,
                    "customerId": CUSTOMER,
                    "occurredAt": "2026-01-01T00:00:00.000Z",
                    "payload": {},
                },
            }
        ],
    )
    return delivery_id


async def list_catalog(api: ApiUnderTest, tenant: str) -> Call:
    return Call("GET", "/api/v1/admin/event-definitions")


async def create_definition(api: ApiUnderTest, tenant: str) -> Call:
    body = {
        "eventType": unique(),
        "displayName": "x",
        "category": "Usage",
        "severity": "INFO",
        "defaultChannels": [],
    }
    return Call("POST", "/api/v1/admin/event-definitions", json=body)


async def update_definition(api: ApiUnderTest, tenant: str) -> Call:
    return Call(
        "PATCH",
        f"/api/v1/admin/event-definitions/{await definition(api, tenant)}",
        json={"severity": "WARNING"},
    )


async def delete_definition(api: ApiUnderTest, tenant: str) -> Call:
    return Call("DELETE", f"/api/v1/admin/event-definitions/{await definition(api, tenant)}")


async def emit(api: ApiUnderTest, tenant: str) -> Call:
    event_type = await definition(api, tenant)
    return Call(
        "POST",
        f"/api/v1/notification-event-definitions/{event_type}/emit",
        json={"customerId": CUSTOMER, "payload": {"amount": 1}},
    )


async def register_endpoint(api: ApiUnderTest, tenant: str) -> Call:
    return Call("POST", "/api/v1/webhook-endpoints", json=endpoint_body())


async def list_endpoints(api: ApiUnderTest, tenant: str) -> Call:
    return Call("GET", "/api/v1/webhook-endpoints", params={"endCustomerId": CUSTOMER})


async def update_endpoint(api: ApiUnderTest, tenant: str) -> Call:
    return Call("PATCH", f"/api/v1/webhook-endpoints/{await endpoint(api, tenant)}", json={"active": False})


async def delete_endpoint(api: ApiUnderTest, tenant: str) -> Call:
    return Call("DELETE", f"/api/v1/webhook-endpoints/{await endpoint(api, tenant)}")


async def probe_endpoint(api: ApiUnderTest, tenant: str) -> Call:
    return Call("POST", f"/api/v1/webhook-endpoints/{await endpoint(api, tenant)}/test")


async def recover_endpoint(api: ApiUnderTest, tenant: str) -> Call:
    endpoint_id = await endpoint(api, tenant)
    return Call(
        "POST", f"/api/v1/webhook-endpoints/{endpoint_id}/recover", params={"since": "2026-01-01T00:00:00Z"}
    )


async def list_preferences(api: ApiUnderTest, tenant: str) -> Call:
    return Call("GET", "/api/v1/notification-preferences")


async def put_preference(api: ApiUnderTest, tenant: str) -> Call:
    body = {
        "eventType": await definition(api, tenant),
        "enabled": True,
        "channels": ["EMAIL"],
        "threshold": 5,
    }
    return Call("PUT", "/api/v1/notification-preferences", json=body)


async def delivery_logs(api: ApiUnderTest, tenant: str) -> Call:
    return Call("GET", "/internal/v1/delivery-logs/by-customer", params={"endCustomerId": CUSTOMER})


async def replay(api: ApiUnderTest, tenant: str) -> Call:
    return Call("POST", f"/api/v1/deliveries/{await failed_delivery(api, tenant)}/replay")


EMBED_KEYS = "/api/v1/admin/embed-keys"
SIGNING_KEYS = "/api/v1/admin/bridge-signing-keys"
EMBED_ORIGINS = {"allowedDomains": ["https://app.acme.test"]}


async def embed_key(api: ApiUnderTest, tenant: str) -> str:
    key_id: str = (await owner(api, tenant, "POST", EMBED_KEYS, json=EMBED_ORIGINS))["keyId"]
    return key_id


async def signing_key(api: ApiUnderTest, tenant: str) -> str:
    kid: str = (await owner(api, tenant, "POST", SIGNING_KEYS))["kid"]
    return kid


async def create_embed_key(api: ApiUnderTest, tenant: str) -> Call:
    return Call("POST", EMBED_KEYS, json=EMBED_ORIGINS)


async def list_embed_keys(api: ApiUnderTest, tenant: str) -> Call:
    return Call("GET", EMBED_KEYS)


async def update_embed_key(api: ApiUnderTest, tenant: str) -> Call:
    return Call(
        "PATCH",
        f"{EMBED_KEYS}/{await embed_key(api, tenant)}",
        json={"allowedDomains": ["https://other.acme.test"]},
    )


async def revoke_embed_key(api: ApiUnderTest, tenant: str) -> Call:
    return Call("DELETE", f"{EMBED_KEYS}/{await embed_key(api, tenant)}")


async def mint_signing_key(api: ApiUnderTest, tenant: str) -> Call:
    return Call("POST", SIGNING_KEYS)


async def list_signing_keys(api: ApiUnderTest, tenant: str) -> Call:
    return Call("GET", SIGNING_KEYS)


async def promote_signing_key(api: ApiUnderTest, tenant: str) -> Call:
    return Call("POST", f"{SIGNING_KEYS}/{await signing_key(api, tenant)}/promote")


async def revoke_signing_key(api: ApiUnderTest, tenant: str) -> Call:
    return Call("DELETE", f"{SIGNING_KEYS}/{await signing_key(api, tenant)}")


async def revoke_embed_sessions(api: ApiUnderTest, tenant: str) -> Call:
    return Call("POST", "/api/v1/admin/embed-sessions/revoke", json={"customerId": CUSTOMER})


PROVIDERS = "/api/v1/admin/channel-providers"
DESTINATIONS = "/api/v1/contact-destinations"
TEMPLATES = "/api/v1/admin/templates"
PAGERDUTY_PROVIDER = {"eventsUrl": "https://events.pagerduty.com/v2/enqueue"}


def destination_body(customer: str = CUSTOMER) -> dict[str, Any]:
    return {
        "endCustomerId": customer,
        "channel": "EMAIL",
        "address": f"{uuid.uuid4().hex[:10]}@customer.example.com",
    }


async def provider(api: ApiUnderTest, tenant: str) -> str:
    await owner(api, tenant, "PUT", f"{PROVIDERS}/PAGERDUTY", json=PAGERDUTY_PROVIDER)
    return "PAGERDUTY"


async def destination(api: ApiUnderTest, tenant: str) -> str:
    created = await owner(api, tenant, "POST", DESTINATIONS, json=destination_body())
    destination_id: str = created["destinationId"]
    return destination_id


async def put_provider(api: ApiUnderTest, tenant: str) -> Call:
    return Call("PUT", f"{PROVIDERS}/PAGERDUTY", json=PAGERDUTY_PROVIDER)


async def list_providers(api: ApiUnderTest, tenant: str) -> Call:
    return Call("GET", PROVIDERS)


async def delete_provider(api: ApiUnderTest, tenant: str) -> Call:
    return Call("DELETE", f"{PROVIDERS}/{await provider(api, tenant)}")


async def register_destination(api: ApiUnderTest, tenant: str) -> Call:
    return Call("POST", DESTINATIONS, json=destination_body())


async def list_destinations(api: ApiUnderTest, tenant: str) -> Call:
    return Call("GET", DESTINATIONS, params={"endCustomerId": CUSTOMER})


async def update_destination(api: ApiUnderTest, tenant: str) -> Call:
    return Call("PATCH", f"{DESTINATIONS}/{await destination(api, tenant)}", json={"active": False})


async def delete_destination(api: ApiUnderTest, tenant: str) -> Call:
    return Call("DELETE", f"{DESTINATIONS}/{await destination(api, tenant)}")


async def probe_destination(api: ApiUnderTest, tenant: str) -> Call:
    await owner(
        api,
        tenant,
        "PUT",
        f"{PROVIDERS}/EMAIL",
        json={
            "host": "smtp.example.com",
            "port": 587,
            "security": "starttls",
            "fromAddress": "n@example.com",
        },
    )
    return Call("POST", f"{DESTINATIONS}/{await destination(api, tenant)}/test")


async def recover_destination(api: ApiUnderTest, tenant: str) -> Call:
    destination_id = await destination(api, tenant)
    return Call("POST", f"{DESTINATIONS}/{destination_id}/recover", params={"since": "2026-01-01T00:00:00Z"})


async def put_template(api: ApiUnderTest, tenant: str) -> Call:
    return Call(
        "PUT", f"{TEMPLATES}/INVOICE_GENERATED/SMS", json={"text": "Invoice {{ payload.invoiceNumber }}"}
    )


async def get_template(api: ApiUnderTest, tenant: str) -> Call:
    return Call("GET", f"{TEMPLATES}/{await definition(api, tenant)}/EMAIL")


DEFINITIONS = "/api/v1/admin/event-definitions"
ENDPOINTS = "/api/v1/webhook-endpoints"
ROUTES = [
    Route("GET", DEFINITIONS, False, list_catalog),
    Route("POST", DEFINITIONS, False, create_definition),
    Route("PATCH", f"{DEFINITIONS}/{{eventType}}", False, update_definition),
    Route("DELETE", f"{DEFINITIONS}/{{eventType}}", False, delete_definition),
    Route("POST", "/api/v1/notification-event-definitions/{eventType}/emit", False, emit),
    Route("POST", ENDPOINTS, False, register_endpoint),
    Route("GET", ENDPOINTS, False, list_endpoints),
    Route("PATCH", f"{ENDPOINTS}/{{endpointId}}", False, update_endpoint),
    Route("DELETE", f"{ENDPOINTS}/{{endpointId}}", False, delete_endpoint),
    Route("POST", f"{ENDPOINTS}/{{endpointId}}/test", False, probe_endpoint),
    Route("POST", f"{ENDPOINTS}/{{endpointId}}/recover", False, recover_endpoint),
    Route("GET", "/api/v1/notification-preferences", True, list_preferences),
    Route("PUT", "/api/v1/notification-preferences", True, put_preference),
    Route("GET", "/internal/v1/delivery-logs/by-customer", False, delivery_logs),
    Route("POST", "/api/v1/deliveries/{deliveryId}/replay", False, replay),
    Route("POST", EMBED_KEYS, False, create_embed_key),
    Route("GET", EMBED_KEYS, False, list_embed_keys),
    Route("PATCH", f"{EMBED_KEYS}/{{keyId}}", False, update_embed_key),
    Route("DELETE", f"{EMBED_KEYS}/{{keyId}}", False, revoke_embed_key),
    Route("POST", SIGNING_KEYS, False, mint_signing_key),
    Route("GET", SIGNING_KEYS, False, list_signing_keys),
    Route("POST", f"{SIGNING_KEYS}/{{kid}}/promote", False, promote_signing_key),
    Route("DELETE", f"{SIGNING_KEYS}/{{kid}}", False, revoke_signing_key),
    Route("POST", "/api/v1/admin/embed-sessions/revoke", False, revoke_embed_sessions),
    Route("PUT", f"{PROVIDERS}/{{channel}}", False, put_provider),
    Route("GET", PROVIDERS, False, list_providers),
    Route("DELETE", f"{PROVIDERS}/{{channel}}", False, delete_provider),
    Route("POST", DESTINATIONS, False, register_destination),
    Route("GET", DESTINATIONS, False, list_destinations),
    Route("PATCH", f"{DESTINATIONS}/{{destinationId}}", False, update_destination),
    Route("DELETE", f"{DESTINATIONS}/{{destinationId}}", False, delete_destination),
    Route("POST", f"{DESTINATIONS}/{{destinationId}}/test", False, probe_destination),
    Route("POST", f"{DESTINATIONS}/{{destinationId}}/recover", False, recover_destination),
    Route("PUT", f"{TEMPLATES}/{{eventType}}/{{channel}}", False, put_template),
    Route("GET", f"{TEMPLATES}/{{eventType}}/{{channel}}", False, get_template),
]


def test_the_matrix_covers_every_documented_operation_with_its_declared_role() -> None:
    """The role an `@operation` declares (and documents) is the one `test_role_by_route` enforces."""
    documented = {
        (operation.method.upper(), operation.path, operation.role == "customer")
        for operation in api_operations()
    }
    assert {(route.method, route.path, route.portal) for route in ROUTES} == documented


@pytest.mark.parametrize("role", list(ROLES))
@pytest.mark.parametrize("route", ROUTES, ids=[route.name for route in ROUTES])
async def test_role_by_route(api: ApiUnderTest, route: Route, role: str) -> None:
    tenant = f"t-matrix-{uuid.uuid4().hex[:6]}"
    call = await route.prepare(api, tenant)
    customer = CUSTOMER if role == "CUSTOMER" else None

    reply = await api.call(
        call.method,
        call.path,
        tenant=tenant,
        roles=ROLES[role],
        customer=customer,
        json=call.json,
        params=call.params,
    )

    allowed = role == "CUSTOMER" if route.portal else role in ("OWNER", "ADMIN", "BILLING_ADMIN")
    if allowed:
        assert 200 <= reply.status < 300, reply.body
    else:
        assert (reply.status, reply.error["code"]) == (403, "insufficient_role")


@pytest.mark.parametrize("route", [route for route in ROUTES if route.portal], ids=lambda route: route.name)
async def test_portal_routes_need_the_customer_id_claim(api: ApiUnderTest, route: Route) -> None:
    now = int(time.time())
    claims = {"sub": "portal-user", "tenant_id": "t1", "roles": ["CUSTOMER"], "iat": now, "exp": now + 300}
    token = jwt.encode(claims, JWT_SECRET, algorithm="HS256")
    call = await route.prepare(api, "t1")

    reply = await api.call(
        call.method, call.path, json=call.json, headers={"Authorization": f"Bearer {token}"}
    )

    assert (reply.status, reply.error["code"]) == (403, "customer_id_missing")


# ----------------------------------------------------------------------------- tenant isolation


async def test_every_route_with_another_tenants_ids_is_404_and_changes_nothing(api: ApiUnderTest) -> None:
    home, intruder = f"t-home-{uuid.uuid4().hex[:6]}", f"t-intruder-{uuid.uuid4().hex[:6]}"
    event_type = await definition(api, home)
    endpoint_id = await endpoint(api, home)
    delivery_id = await failed_delivery(api, home)
    key_id = await embed_key(api, home)
    kid = await signing_key(api, home)
    destination_id = await destination(api, home)
    await provider(api, home)
    template = {"text": "Home tenant's {{ display_name }}"}
    assert (await api.call("PUT", f"{TEMPLATES}/{event_type}/SMS", tenant=home, json=template)).status == 200
    preference = {"eventType": event_type, "enabled": True, "channels": ["SMS"]}
    assert (
        await api.portal("PUT", "/api/v1/notification-preferences", tenant=home, json=preference)
    ).status == 200

    async def as_intruder(method: str, path: str, **kwargs: Any) -> Any:
        return await api.call(method, path, tenant=intruder, roles=("OWNER",), **kwargs)

    not_found = [
        await as_intruder(
            "PATCH", f"/api/v1/admin/event-definitions/{event_type}", json={"severity": "CRITICAL"}
        ),
        await as_intruder("DELETE", f"/api/v1/admin/event-definitions/{event_type}"),
        await as_intruder(
            "POST",
            f"/api/v1/notification-event-definitions/{event_type}/emit",
            json={"customerId": CUSTOMER, "payload": {}},
        ),
        await as_intruder("PATCH", f"/api/v1/webhook-endpoints/{endpoint_id}", json={"active": False}),
        await as_intruder(
            "PATCH", f"/api/v1/webhook-endpoints/{endpoint_id}", json={"secret": "whsec_intruder_0000"}
        ),
        await as_intruder("DELETE", f"/api/v1/webhook-endpoints/{endpoint_id}"),
        await as_intruder("POST", f"/api/v1/webhook-endpoints/{endpoint_id}/test"),
        await as_intruder(
            "POST",
            f"/api/v1/webhook-endpoints/{endpoint_id}/recover",
            params={"since": "2026-01-01T00:00:00Z"},
        ),
        await as_intruder("POST", f"/api/v1/deliveries/{delivery_id}/replay"),
        await api.portal("PUT", "/api/v1/notification-preferences", tenant=intruder, json=preference),
        await as_intruder("PATCH", f"{EMBED_KEYS}/{key_id}", json={"allowedDomains": ["https://evil.test"]}),
        await as_intruder("DELETE", f"{EMBED_KEYS}/{key_id}"),
        await as_intruder("POST", f"{SIGNING_KEYS}/{kid}/promote"),
        await as_intruder("DELETE", f"{SIGNING_KEYS}/{kid}"),
        await as_intruder("PATCH", f"{DESTINATIONS}/{destination_id}", json={"active": False}),
        await as_intruder("DELETE", f"{DESTINATIONS}/{destination_id}"),
        await as_intruder("POST", f"{DESTINATIONS}/{destination_id}/test"),
        await as_intruder(
            "POST", f"{DESTINATIONS}/{destination_id}/recover", params={"since": "2026-01-01T00:00:00Z"}
        ),
        await as_intruder("DELETE", f"{PROVIDERS}/PAGERDUTY"),
        await as_intruder("GET", f"{TEMPLATES}/{event_type}/SMS"),
        await as_intruder("PUT", f"{TEMPLATES}/{event_type}/SMS", json={"text": "intruder"}),
    ]
    assert [reply.status for reply in not_found] == [404] * len(not_found), [r.body for r in not_found]

    catalog = await as_intruder("GET", "/api/v1/admin/event-definitions")
    assert event_type not in {item["eventType"] for item in catalog.json()["items"]}
    endpoints = await as_intruder("GET", "/api/v1/webhook-endpoints", params={"endCustomerId": CUSTOMER})
    assert (endpoints.status, endpoints.json()) == (200, {"items": []})
    logs = await as_intruder(
        "GET", "/internal/v1/delivery-logs/by-customer", params={"endCustomerId": CUSTOMER}
    )
    assert (logs.status, logs.json()) == (200, {"items": [], "nextCursor": None})
    preferences = await api.portal("GET", "/api/v1/notification-preferences", tenant=intruder)
    assert (preferences.status, preferences.json()) == (200, {"items": []})
    for path in (EMBED_KEYS, SIGNING_KEYS, PROVIDERS):
        keys = await as_intruder("GET", path)
        assert (keys.status, keys.json()) == (200, {"items": []})
    destinations = await as_intruder("GET", DESTINATIONS, params={"endCustomerId": CUSTOMER})
    assert (destinations.status, destinations.json()) == (200, {"items": []})

    # Nothing of the home tenant changed, and its unique URL does not leak through a 409.
    home_endpoints = await api.call(
        "GET", "/api/v1/webhook-endpoints", tenant=home, params={"endCustomerId": CUSTOMER}
    )
    (row,) = [item for item in home_endpoints.json()["items"] if item["endpointId"] == endpoint_id]
    assert (row["endpointId"], row["active"], row["version"], len(row["signingSecrets"])) == (
        endpoint_id,
        True,
        1,
        1,
    )
    same_url = await as_intruder("POST", "/api/v1/webhook-endpoints", json=endpoint_body(url=row["url"]))
    assert same_url.status == 201
    home_catalog = await api.call("GET", "/api/v1/admin/event-definitions", tenant=home)
    (mine,) = [item for item in home_catalog.json()["items"] if item["eventType"] == event_type]
    assert (mine["severity"], mine["version"]) == ("INFO", 1)
    home_preferences = await api.portal("GET", "/api/v1/notification-preferences", tenant=home)
    assert [item["channels"] for item in home_preferences.json()["items"]] == [["SMS"]]
    home_keys = await api.call("GET", EMBED_KEYS, tenant=home)
    assert [(k["keyId"], k["status"], k["allowedDomains"]) for k in home_keys.json()["items"]] == [
        (key_id, "ACTIVE", EMBED_ORIGINS["allowedDomains"])
    ]
    home_signing = await api.call("GET", SIGNING_KEYS, tenant=home)
    assert [(k["kid"], k["status"]) for k in home_signing.json()["items"]] == [(kid, "NEXT")]
    home_destinations = await api.call("GET", DESTINATIONS, tenant=home, params={"endCustomerId": CUSTOMER})
    assert [(d["destinationId"], d["active"], d["version"]) for d in home_destinations.json()["items"]] == [
        (destination_id, True, 1)
    ]
    home_providers = await api.call("GET", PROVIDERS, tenant=home)
    assert [p["channel"] for p in home_providers.json()["items"]] == ["PAGERDUTY"]
    home_template = await api.call("GET", f"{TEMPLATES}/{event_type}/SMS", tenant=home)
    assert (home_template.json()["builtIn"], home_template.json()["text"]) == (False, template["text"])
