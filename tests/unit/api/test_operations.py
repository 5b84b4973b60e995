"""A handler's `@operation` is both its route and its documented operation."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from aforo.api.openapi import document_for
from aforo.api.operations import BODY_ERRORS, Answer, Resource, operation
from aforo.api.wire import RequestBody, ResponseBody


class Greeting(RequestBody):
    name: str


class Greeted(ResponseBody):
    text: str


class GreetingRoutes(Resource):
    @operation(
        "post",
        "/greetings",
        "greet",
        "Greet someone.",
        answers={200: Answer("Greeted.", Greeted), **BODY_ERRORS},
        body=Greeting,
    )
    async def greet(self, request: web.Request) -> web.Response:
        return web.json_response({"text": "hello"})

    async def helper(self, request: web.Request) -> web.Response:
        """Not declared, so neither registered nor documented."""
        return web.Response(status=500)

    @operation(
        "get",
        "/greetings/{greetingId}",
        "getGreeting",
        "One greeting.",
        answers={200: Answer("The greeting.", Greeted)},
        role="customer",
    )
    async def get(self, request: web.Request) -> web.Response:
        return web.json_response({"text": request.match_info["greetingId"]})


def test_the_declared_handlers_are_the_operations_in_the_order_they_are_defined() -> None:
    assert [declared.operation_id for declared in GreetingRoutes.operations] == ["greet", "getGreeting"]
    assert GreetingRoutes.operations[1].path_parameters == ["greetingId"]
    assert GreetingRoutes.operations[1].role == "customer"


def test_the_routes_are_the_declarations_bound_to_the_instance() -> None:
    routes = GreetingRoutes(context=None)  # type: ignore[arg-type]  # these handlers use no context
    app = web.Application()
    app.add_routes(routes.routes())

    registered = {(route.method, route.resource.canonical) for route in app.router.routes() if route.resource}

    assert registered - {("HEAD", "/greetings/{greetingId}")} == {
        ("POST", "/greetings"),
        ("GET", "/greetings/{greetingId}"),
    }


def test_the_document_is_built_from_the_same_declarations() -> None:
    document: dict[str, Any] = document_for(GreetingRoutes.operations)

    assert set(document["paths"]) == {"/greetings", "/greetings/{greetingId}"}
    greet = document["paths"]["/greetings"]["post"]
    assert greet["operationId"] == "greet"
    assert greet["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Greeting"
    }
    assert {"200", "400", "401", "403", "413", "415", "422", "429", "503"} == set(greet["responses"])
    assert document["paths"]["/greetings/{greetingId}"]["get"]["tags"] == ["customer"]
    assert {"Greeting", "Greeted", "ErrorBody"} <= set(document["components"]["schemas"])
