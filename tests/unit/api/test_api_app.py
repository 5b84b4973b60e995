"""The API process without a broker: refused configurations, the request gate (start and drain),
the HTTP boundary (413/400/422/404/405/500 as JSON) and the OpenAPI document against the routes."""

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiokafka.errors import KafkaConnectionError
from pydantic import Field
from structlog.testing import capture_logs

from aforo.api import changes
from aforo.api.app import ApiService
from aforo.api.boundary import problem_middleware, read_body, read_query
from aforo.api.openapi import openapi_document
from aforo.api.problems import NotFoundError, UnavailableError
from aforo.api.publishing import Publisher
from aforo.api.redelivery import webhook_test_request
from aforo.api.request_gate import RequestGate
from aforo.api.route_table import api_operations
from aforo.api.settings import ApiSettings
from aforo.api.wire import QueryParameters, RequestBody
from aforo.shared.config_changes import ConfigKind
from aforo.shared.kafka import TopicNames
from aforo.shared.lifecycle import ServiceRunner
from aforo.shared.secret_box import generate_key
from aforo.shared.settings import ConfigurationError

JWT_SECRET = "unit-test-secret-0123456789abcdef-xyz"
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def settings(**overrides: Any) -> ApiSettings:
    values: dict[str, Any] = {
        "auth_mode": "hs256",
        "jwt_hs256_secret": JWT_SECRET,
        "secrets_encryption_keys": generate_key(),
        "kafka_bootstrap_servers": "127.0.0.1:1",
        "mongo_uri": "mongodb://127.0.0.1:1",
    }
    values.update(overrides)
    return ApiSettings(**values)


# ----------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        ({"secrets_encryption_keys": None}, "AFORO_SECRETS_ENCRYPTION_KEYS"),
        ({"secrets_encryption_keys": " , "}, "AFORO_SECRETS_ENCRYPTION_KEYS"),
        ({"secrets_encryption_keys": "not-a-key"}, "AFORO_SECRETS_ENCRYPTION_KEYS"),
        ({"auth_mode": "jwks"}, "AFORO_API_JWKS_URL"),
        ({"auth_mode": "basic"}, "AFORO_API_AUTH_MODE"),
        ({"jwt_hs256_secret": "too-short"}, "AFORO_API_JWT_HS256_SECRET"),
    ],
)
def test_a_configuration_that_cannot_work_is_refused_naming_the_setting(
    overrides: dict[str, Any], names: str
) -> None:
    with pytest.raises(ConfigurationError) as refused:
        ApiService(settings(**overrides))

    assert names in str(refused.value)
    for value in overrides.values():
        if isinstance(value, str) and len(value.strip(" ,")) > 5:
            assert value not in str(refused.value)


def test_several_encryption_keys_are_accepted_newest_first() -> None:
    older, newer = generate_key(), generate_key()

    service = ApiService(settings(secrets_encryption_keys=f"{newer}, {older}"))

    assert service.context.secret_box.decrypt(service.context.secret_box.encrypt("s")) == "s"


def test_every_registered_route_is_a_documented_operation() -> None:
    """By construction (both come from the handlers' `@operation`); this guards the construction."""
    app = web.Application()
    ApiService(settings()).add_routes(app)

    registered = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }

    assert registered == {(operation.method, operation.path) for operation in api_operations()} | {
        ("get", "/openapi.json")
    }


# ----------------------------------------------------------------------------- the gate


@pytest_asyncio.fixture
async def gated() -> AsyncIterator[
    tuple[TestClient[web.Request, web.Application], RequestGate, asyncio.Event]
]:
    gate = RequestGate({"/healthz"})
    release = asyncio.Event()

    async def slow(_: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="done")

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="alive")

    app = web.Application(middlewares=[gate.middleware()])
    app.router.add_get("/slow", slow)
    app.router.add_get("/healthz", healthz)
    async with TestClient(TestServer(app)) as client:
        yield client, gate, release


async def test_the_gate_refuses_requests_before_start_but_not_health(gated: Any) -> None:
    client, _, _ = gated

    refused = await client.get("/slow")
    health = await client.get("/healthz")

    assert refused.status == 503
    assert (await refused.json())["error"]["code"] == "not_accepting"
    assert health.status == 200


async def test_draining_refuses_new_requests_and_waits_for_those_in_flight(gated: Any) -> None:
    client, gate, release = gated
    gate.open()
    in_flight = asyncio.ensure_future(client.get("/slow"))
    while gate.in_flight == 0:
        await asyncio.sleep(0.01)

    drained = asyncio.ensure_future(gate.close_and_wait())
    refused = await client.get("/slow")
    await asyncio.sleep(0.05)
    assert not drained.done()
    release.set()
    answered = await in_flight
    await asyncio.wait_for(drained, 5)

    assert refused.status == 503
    assert (answered.status, await answered.text()) == (200, "done")


# ----------------------------------------------------------------------------- the boundary


class Thing(RequestBody):
    name: str = Field(min_length=1)
    tags: list[int] = Field(default_factory=list)


class Page(QueryParameters):
    limit: int = Field(default=10, le=50)


@pytest_asyncio.fixture
async def boundary() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async def create(request: web.Request) -> web.Response:
        thing = await read_body(request, Thing, limit=1024)
        return web.json_response({"name": thing.name})

    async def listing(request: web.Request) -> web.Response:
        return web.json_response({"limit": read_query(request, Page).limit})

    async def missing(_: web.Request) -> web.Response:
        raise NotFoundError("thing_not_found", "no such thing", "thingId")

    async def broken(request: web.Request) -> web.Response:
        await request.read()
        raise RuntimeError("a bug")

    app = web.Application(middlewares=[problem_middleware], client_max_size=1024)
    app.router.add_post("/things", create)
    app.router.add_get("/things", listing)
    app.router.add_get("/things/missing", missing)
    app.router.add_post("/broken", broken)
    async with TestClient(TestServer(app)) as client:
        yield client


JSON = {"Content-Type": "application/json"}


async def error_of(response: Any) -> tuple[int, str, str | None]:
    body = await response.json()
    assert response.content_type == "application/json"
    return response.status, body["error"]["code"], body["error"].get("field")


async def test_bodies_are_checked_for_size_then_json_then_shape(boundary: Any) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(8):
            yield b"x" * 256

    def post(data: Any) -> Any:
        return boundary.post("/things", data=data, headers=JSON)

    assert await error_of(await post(b"{" + b" " * 2000 + b"}")) == (413, "payload_too_large", None)
    assert (await error_of(await post(chunks())))[:2] == (413, "payload_too_large")
    assert await error_of(await post(b"{nope")) == (400, "malformed_json", "body")
    assert await error_of(await post(b'{"name": Infinity}')) == (400, "malformed_json", "body")
    assert await error_of(await post(b"\xff\xfe")) == (400, "malformed_json", "body")
    assert await error_of(await boundary.post("/things", json=[])) == (422, "validation_error", None)
    assert await error_of(await boundary.post("/things", json={"name": "a", "tags": [1, "2"]})) == (
        422,
        "validation_error",
        "tags[1]",
    )
    assert await error_of(await boundary.post("/things", json={"name": "a", "other": 1})) == (
        422,
        "validation_error",
        "other",
    )
    created = await boundary.post("/things", json={"name": "a"})
    assert (created.status, await created.json()) == (200, {"name": "a"})


async def test_queries_are_parsed_leniently_and_checked(boundary: Any) -> None:
    assert await (await boundary.get("/things", params={"limit": "7", "unknown": "x"})).json() == {"limit": 7}
    assert await error_of(await boundary.get("/things", params={"limit": "99"})) == (
        422,
        "validation_error",
        "limit",
    )


async def test_route_errors_and_aiohttp_errors_leave_as_json(boundary: Any) -> None:
    assert await error_of(await boundary.get("/things/missing")) == (404, "thing_not_found", "thingId")
    assert await error_of(await boundary.get("/nowhere")) == (404, "not_found", None)
    wrong_method = await boundary.delete("/things")
    assert await error_of(wrong_method) == (405, "method_not_allowed", None)
    assert "POST" in wrong_method.headers["Allow"]


async def test_an_unexpected_error_is_500_and_logged_without_the_body(boundary: Any) -> None:
    with capture_logs() as logged:
        reply = await boundary.post("/broken", data=b'{"secret": "whsec_in_the_body_0001"}', headers=JSON)

    assert await error_of(reply) == (500, "internal_error", None)
    (line,) = [entry for entry in logged if entry["event"] == "request_failed"]
    assert (line["method"], line["path"], line["log_level"], line["exc_info"]) == (
        "POST",
        "/broken",
        "error",
        True,
    )
    assert "whsec_in_the_body_0001" not in repr(logged)


# ----------------------------------------------------------------------------- the document


def test_the_document_is_openapi_3_1_with_every_reference_resolvable() -> None:
    document = openapi_document()
    text = repr(document)

    assert document["openapi"] == "3.1.0"
    for reference in set(re.findall(r"#/components/schemas/([A-Za-z0-9_-]+)", text)):
        assert reference in document["components"]["schemas"], reference
    assert "$defs" not in text


@pytest.mark.parametrize("operation", api_operations(), ids=lambda operation: operation.operation_id)
def test_every_operation_documents_its_errors_and_parameters(operation: Any) -> None:
    documented = openapi_document()["paths"][operation.path][operation.method]

    assert {"400", "401", "403", "503"} <= set(documented["responses"])
    if operation.body is not None:
        assert {"413", "422"} <= set(documented["responses"])
        assert documented["requestBody"]["required"] is True
    path_parameters = [p["name"] for p in documented["parameters"] if p["in"] == "path"]
    assert path_parameters == operation.path_parameters
    for parameter in documented["parameters"]:
        assert "anyOf" not in parameter["schema"] or all(
            option.get("type") != "null" for option in parameter["schema"]["anyOf"]
        )
    assert documented["tags"] == [operation.role]


def test_the_secret_is_write_only_and_never_in_a_response_schema() -> None:
    schemas = openapi_document()["components"]["schemas"]

    assert schemas["EndpointRegistration"]["properties"]["secret"]["writeOnly"] is True
    assert "secret" not in schemas["EndpointView"]["properties"]
    assert "secrets" not in schemas["EndpointView"]["properties"]


async def test_the_runner_wires_the_api_middlewares_around_its_routes() -> None:
    service = ApiService(settings())
    app = ServiceRunner(service, service.api_settings).build_http_app()

    async with TestClient(TestServer(app)) as client:
        # Not started: API routes wait, the health and document routes answer.
        assert await error_of(await client.get("/api/v1/admin/event-definitions")) == (
            503,
            "not_accepting",
            None,
        )
        document = await client.get("/openapi.json")
        assert (document.status, (await document.json())["openapi"]) == (200, "3.1.0")
        assert (await client.get("/healthz")).status == 200
        service.gate.open()
        unauthenticated = await client.get("/api/v1/admin/event-definitions")
        assert await error_of(unauthenticated) == (401, "missing_token", None)
    await service.verifier.close()
    await service.mongo.close()


# ----------------------------------------------------------------------------- the publisher


class RefusingProducer:
    """A producer whose broker never acknowledges: a KafkaError, or no answer at all."""

    def __init__(self, error: Exception | None) -> None:
        self.error = error
        self.sent: list[tuple[str, bytes | None]] = []

    async def send(self, topic: str, value: bytes, key: bytes | None = None, headers: Any = None) -> Any:
        self.sent.append((topic, key))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.error is not None:
            future.set_exception(self.error)
        return future


@pytest.mark.parametrize("error", [KafkaConnectionError(), None], ids=["broker error", "no ack in time"])
async def test_an_unacknowledged_publish_is_503_and_a_config_change_is_reported_lost(
    error: Exception | None,
) -> None:
    producer = RefusingProducer(error)
    publisher = Publisher(lambda: producer, TopicNames("p."), timeout_seconds=0.05)
    probe = webhook_test_request(
        {"endpointId": "e", "tenantId": "t1", "endCustomerId": "c1"}, event_id="x", now=NOW
    )
    change = changes.deleted(ConfigKind.WEBHOOK_ENDPOINT, "t1", "e", version=2, now=NOW)

    with pytest.raises(UnavailableError) as refused:
        await publisher.dispatch_requests([probe])
    published = await publisher.config_change(change)

    assert (refused.value.status, refused.value.code) == (503, "broker_unavailable")
    assert published is False
    assert producer.sent == [
        ("p.dispatch.requests", b"t1:c1"),
        ("p.config.changes", b"webhook_endpoint:t1:e"),
    ]
