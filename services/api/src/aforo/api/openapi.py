"""The OpenAPI 3.1 document served at `/openapi.json`, built from the operations the handlers declare.

Each handler's `@operation` (`aforo.api.operations`) names its method, path, role, body, query and
answers; the same declarations register the routes (`aforo.api.route_table`), so what is served is
what is documented, as starlette's `schemas.py` builds its document from the route table. Bodies,
queries and responses are the pydantic models the routes validate and answer with (JSON Schema
2020-12, which OpenAPI 3.1 uses as is); the integration test runs schemathesis against the running
API with this document.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any, Final

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from aforo.api.auth import TENANT_HEADER
from aforo.api.operations import Answer, Operation
from aforo.api.route_table import api_operations
from aforo.api.wire import ResponseBody

OPENAPI_PATH: Final = "/openapi.json"


class ErrorDetail(ResponseBody):
    code: str
    message: str
    field: str | None = None


class ErrorBody(ResponseBody):
    """Every error: `{"error": {"code", "message", "field"?}}`."""

    error: ErrorDetail


_COMMON_ERRORS: Final = {
    400: Answer(
        "The X-Tenant-Id header is missing, or the body is not UTF-8 JSON (a BOM, a duplicate key, "
        "nesting deeper than 501 levels)."
    ),
    401: Answer("No valid bearer token.", headers={"WWW-Authenticate": "The bearer challenge (RFC 6750)."}),
    403: Answer("The token is for another tenant, or lacks the route's role."),
    429: Answer(
        "The tenant's request rate is over its limit; retry after Retry-After seconds.",
        headers={"Retry-After": "Seconds until the tenant's next request is taken."},
    ),
    503: Answer(
        "A dependency (MongoDB, the event broker, the signing keys) is unavailable; retry.",
        headers={"Retry-After": "Seconds to wait before retrying."},
    ),
}


ModelRefs = Mapping[tuple[type[BaseModel], JsonSchemaMode], Mapping[str, Any]]


def _model_refs(operations: Sequence[Operation]) -> tuple[ModelRefs, dict[str, Any]]:
    """`$ref`s to every body, query and response model, and the component schemas they point at."""
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorBody, "serialization")]
    for operation in operations:
        for model in (operation.body, operation.query):
            if model is not None:
                models.append((model, "validation"))
        models += [(answer.model, "serialization") for answer in operation.answers.values() if answer.model]
    refs, top = models_json_schema(
        list(dict.fromkeys(models)), by_alias=True, ref_template="#/components/schemas/{model}"
    )
    references: dict[tuple[type[BaseModel], JsonSchemaMode], Mapping[str, Any]] = {}
    for (schema_model, mode), reference in refs.items():
        if issubclass(schema_model, BaseModel):
            references[(schema_model, mode)] = reference
    return references, top.get("$defs", {})


def _without_null(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A query parameter is absent or a value, never JSON null."""
    result = {key: value for key, value in schema.items() if key not in ("title", "default")}
    options = result.pop("anyOf", None)
    if options is not None:
        kept = [option for option in options if option.get("type") != "null"]
        if len(kept) == 1:
            result.update(kept[0])
        else:
            result["anyOf"] = kept
    return result


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
    required = set(schema.get("required", []))
    return [
        {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": _without_null(property_schema),
            **({"description": property_schema["description"]} if "description" in property_schema else {}),
        }
        for name, property_schema in schema.get("properties", {}).items()
    ]


def _response(answer: Answer, refs: ModelRefs) -> dict[str, Any]:
    response: dict[str, Any] = {"description": answer.description}
    if answer.model is not None:
        response["content"] = {"application/json": {"schema": refs[(answer.model, "serialization")]}}
    if answer.headers:
        response["headers"] = {
            name: {"description": description, "required": False, "schema": {"type": "string"}}
            for name, description in answer.headers.items()
        }
    return response


def _operation(operation: Operation, refs: ModelRefs) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
        for name in operation.path_parameters
    ]
    if operation.query is not None:
        parameters += _query_parameters(operation.query)
    answers: dict[int, Answer] = dict(operation.answers)
    for status, answer in _COMMON_ERRORS.items():
        answers.setdefault(status, answer)
    roles = (
        "OWNER, ADMIN or BILLING_ADMIN"
        if operation.role == "admin"
        else "CUSTOMER (with a customer_id claim)"
    )
    document: dict[str, Any] = {
        "operationId": operation.operation_id,
        "summary": operation.summary,
        "description": f"Role: {roles}.",
        "tags": [operation.role],
        "parameters": parameters,
        "responses": {
            str(status): _response(
                answer if status < 400 else Answer(answer.description, ErrorBody, answer.headers), refs
            )
            for status, answer in sorted(answers.items())
        },
    }
    if operation.body is not None:
        document["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": refs[(operation.body, "validation")]}},
        }
    return document


@cache
def openapi_document() -> dict[str, Any]:
    """The API's whole document (built once; it depends on code only)."""
    return document_for(api_operations())


def document_for(operations: Sequence[Operation]) -> dict[str, Any]:
    """The document of these operations, as their handlers declare them."""
    refs, components = _model_refs(operations)
    paths: dict[str, dict[str, Any]] = {}
    for operation in operations:
        paths.setdefault(operation.path, {})[operation.method] = _operation(operation, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "aforo-notify API",
            "version": "1.0.0",
            "description": "Event definitions, webhook endpoints, notification preferences, delivery logs. "
            f"Every operation needs `Authorization: Bearer <JWT>` and `{TENANT_HEADER}`; "
            'errors are `{"error": {"code", "message", "field"?}}`.',
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "tenantHeader": {"type": "apiKey", "in": "header", "name": TENANT_HEADER},
            },
        },
        "security": [{"bearerAuth": [], "tenantHeader": []}],
    }
