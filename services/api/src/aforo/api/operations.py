"""Each handler declares its operation (method, path, role, body, query, answers) where it is defined.

The declaration is the one source of two things: the route aiohttp registers (`Resource.routes`) and
the operation `/openapi.json` documents (`aforo.api.openapi`). A handler that is registered is
therefore documented, and a documented operation is served, by construction; there is no second
table to keep equal to the router.

    class WebhookEndpointRoutes(Resource):
        @operation("delete", ITEM_PATH, "deleteWebhookEndpoint", "Remove an endpoint permanently.",
                   answers={204: Answer("Removed."), **ENDPOINT_NOT_FOUND})
        async def delete(self, request: web.Request) -> web.Response: ...
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel

from aforo.api.boundary import EVENT_ID_HEADER
from aforo.api.context import ApiContext

Role = Literal["admin", "customer"]
Method = Literal["get", "post", "put", "patch", "delete"]
Handler = Callable[[Any, web.Request], Awaitable[web.StreamResponse]]
DeclaredHandler = TypeVar("DeclaredHandler", bound=Handler)

_OPERATION_ATTRIBUTE: Final = "__aforo_operation__"


@dataclass(frozen=True)
class Answer:
    """One documented status: what it means, its JSON body's model (errors get the error body), headers."""

    description: str
    model: type[BaseModel] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Operation:
    method: Method
    path: str
    operation_id: str
    summary: str
    role: Role
    answers: Mapping[int, Answer]
    handler_name: str
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None

    @property
    def path_parameters(self) -> list[str]:
        return [part[1:-1] for part in self.path.split("/") if part.startswith("{")]


def operation(
    method: Method,
    path: str,
    operation_id: str,
    summary: str,
    *,
    answers: Mapping[int, Answer],
    role: Role = "admin",
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
) -> Callable[[DeclaredHandler], DeclaredHandler]:
    """Declare the decorated handler as this operation; its `Resource` class registers and documents it.

    `role` documents who may call it; the handler enforces it (`require_admin`/`require_customer`)
    before it reads anything, and the access tests check every route against it.
    """

    def declare(handler: DeclaredHandler) -> DeclaredHandler:
        declared = Operation(
            method,
            path,
            operation_id,
            summary,
            role,
            dict(answers),
            handler.__name__,
            body=body,
            query=query,
        )
        setattr(handler, _OPERATION_ATTRIBUTE, declared)
        return handler

    return declare


class Resource:
    """A set of handlers over one resource, constructed with the API's context.

    `operations` is collected from the class's own `@operation` handlers, in the order they are
    defined (which is also the order they are registered in).
    """

    operations: ClassVar[tuple[Operation, ...]] = ()

    def __init__(self, context: ApiContext) -> None:
        self.context = context

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declared = [getattr(member, _OPERATION_ATTRIBUTE, None) for member in vars(cls).values()]
        cls.operations = tuple(item for item in declared if isinstance(item, Operation))

    def routes(self) -> list[web.RouteDef]:
        return [
            web.route(declared.method.upper(), declared.path, getattr(self, declared.handler_name))
            for declared in self.operations
        ]


# Answers several operations share.
BODY_ERRORS: Final = {
    413: Answer("The body is over the size limit."),
    415: Answer("The body is not sent as Content-Type: application/json (UTF-8)."),
    422: Answer("The body is of the wrong shape or breaks a rule; `field` names where."),
}
QUERY_ERRORS: Final = {422: Answer("A query parameter is missing or invalid; `field` names it.")}
ACCEPTED_EVENT: Final = Answer(
    "Acknowledged by the broker; no body.", headers={EVENT_ID_HEADER: "The eventId that was sent."}
)
