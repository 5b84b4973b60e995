"""The OpenAPI 3.1 document served at `/openapi.json`, generated from the models at the boundary.

Bodies, queries and responses are the pydantic models the routes validate and answer with (JSON
Schema 2020-12, which OpenAPI 3.1 uses as is); this module adds only what models cannot say: paths,
methods, roles, status codes and headers. A unit test keeps `OPERATIONS` equal to the routes the
service registers, and the integration test runs schemathesis against the running API with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Final, Literal

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from aforo.api.auth import TENANT_HEADER
from aforo.api.channel_providers import ChannelProviderBody, ChannelProviderList, ChannelProviderView
from aforo.api.channel_templates import TemplateOverrideBody, TemplateView
from aforo.api.contact_destinations import (
    DestinationList,
    DestinationListQuery,
    DestinationRegistration,
    DestinationUpdate,
    DestinationView,
)
from aforo.api.definitions import (
    EventDefinitionCreate,
    EventDefinitionList,
    EventDefinitionUpdate,
    EventDefinitionView,
)
from aforo.api.delivery_logs import DeliveryLogPage, DeliveryLogQuery
from aforo.api.emit import EmitRequest
from aforo.api.endpoints import (
    EndpointList,
    EndpointListQuery,
    EndpointRegistration,
    EndpointUpdate,
    EndpointView,
)
from aforo.api.preferences import PreferenceList, PreferenceUpdate, PreferenceView
from aforo.api.redelivery import RecoverQuery, RecoveryAccepted
from aforo.api.routes import (
    channel_providers,
    channel_templates,
    contact_destinations,
    delivery_logs,
    embed_keys,
    emit,
    event_definitions,
    notification_preferences,
    webhook_endpoints,
)
from aforo.api.wire import ResponseBody

OPENAPI_PATH: Final = "/openapi.json"
EVENT_ID_HEADER: Final = emit.EVENT_ID_HEADER

Role = Literal["admin", "customer"]


class ErrorDetail(ResponseBody):
    code: str
    message: str
    field: str | None = None


class ErrorBody(ResponseBody):
    """Every error: `{"error": {"code", "message", "field"?}}`."""

    error: ErrorDetail


@dataclass(frozen=True)
class Answer:
    description: str
    model: type[BaseModel] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    summary: str
    role: Role
    answers: Mapping[int, Answer]
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None

    @property
    def path_parameters(self) -> list[str]:
        return [part[1:-1] for part in self.path.split("/") if part.startswith("{")]


_BODY_ERRORS: Final = {
    413: Answer("The body is over the size limit."),
    415: Answer("The body is not sent as Content-Type: application/json (UTF-8)."),
    422: Answer("The body is of the wrong shape or breaks a rule; `field` names where."),
}
_QUERY_ERRORS: Final = {422: Answer("A query parameter is missing or invalid; `field` names it.")}
_ACCEPTED_EVENT: Final = Answer(
    "Acknowledged by the broker; no body.", headers={EVENT_ID_HEADER: "The eventId that was sent."}
)
_DEFINITION_NOT_FOUND: Final = {404: Answer("No CUSTOM definition of this type for this tenant.")}
_ENDPOINT_NOT_FOUND: Final = {404: Answer("No such endpoint for this tenant.")}
_EMBED_KEY_NOT_FOUND: Final = {404: Answer("No such embed key for this tenant.")}
_SIGNING_KEY_NOT_FOUND: Final = {404: Answer("No such bridge signing key for this tenant.")}
_DESTINATION_NOT_FOUND: Final = {404: Answer("No such contact destination for this tenant.")}

OPERATIONS: Final[tuple[Operation, ...]] = (
    Operation(
        "get",
        event_definitions.COLLECTION_PATH,
        "listEventDefinitions",
        "The tenant's catalog: every SYSTEM event and the tenant's CUSTOM definitions.",
        "admin",
        {200: Answer("The catalog.", EventDefinitionList)},
    ),
    Operation(
        "post",
        event_definitions.COLLECTION_PATH,
        "createEventDefinition",
        "Define a CUSTOM event type, optionally with a trigger rule.",
        "admin",
        {
            201: Answer("Defined.", EventDefinitionView, {"Location": "The definition's path."}),
            409: Answer("The type exists (SYSTEM names and webhook.test included)."),
            **_BODY_ERRORS,
        },
        body=EventDefinitionCreate,
    ),
    Operation(
        "patch",
        event_definitions.ITEM_PATH,
        "updateEventDefinition",
        "Change a CUSTOM definition; SYSTEM rows are read-only.",
        "admin",
        {
            200: Answer("Changed.", EventDefinitionView),
            **_DEFINITION_NOT_FOUND,
            409: Answer("A SYSTEM or reserved type."),
            **_BODY_ERRORS,
        },
        body=EventDefinitionUpdate,
    ),
    Operation(
        "delete",
        event_definitions.ITEM_PATH,
        "deleteEventDefinition",
        "Remove a CUSTOM definition; SYSTEM rows are read-only.",
        "admin",
        {
            204: Answer("Removed."),
            **_DEFINITION_NOT_FOUND,
            409: Answer("A SYSTEM or reserved type."),
        },
    ),
    Operation(
        "post",
        emit.EMIT_PATH,
        "emitCustomEvent",
        "Emit a CUSTOM event for one customer; dispatched like a triggered one.",
        "admin",
        {202: _ACCEPTED_EVENT, **_DEFINITION_NOT_FOUND, **_BODY_ERRORS},
        body=EmitRequest,
    ),
    Operation(
        "post",
        webhook_endpoints.COLLECTION_PATH,
        "registerWebhookEndpoint",
        "Register a customer's webhook endpoint; the secret is stored encrypted and never returned.",
        "admin",
        {
            201: Answer("Registered.", EndpointView, {"Location": "The endpoint's path."}),
            409: Answer("The customer already has an endpoint with this URL."),
            **_BODY_ERRORS,
        },
        body=EndpointRegistration,
    ),
    Operation(
        "get",
        webhook_endpoints.COLLECTION_PATH,
        "listWebhookEndpoints",
        "One customer's endpoints (without secrets).",
        "admin",
        {200: Answer("The endpoints, oldest first.", EndpointList), **_QUERY_ERRORS},
        query=EndpointListQuery,
    ),
    Operation(
        "patch",
        webhook_endpoints.ITEM_PATH,
        "updateWebhookEndpoint",
        "Change the active flag, events or retry policy; a new secret is a rotation.",
        "admin",
        {
            200: Answer("Changed.", EndpointView),
            **_ENDPOINT_NOT_FOUND,
            409: Answer("Changed concurrently too often; retry."),
            **_BODY_ERRORS,
        },
        body=EndpointUpdate,
    ),
    Operation(
        "delete",
        webhook_endpoints.ITEM_PATH,
        "deleteWebhookEndpoint",
        "Remove an endpoint permanently.",
        "admin",
        {204: Answer("Removed."), **_ENDPOINT_NOT_FOUND},
    ),
    Operation(
        "post",
        webhook_endpoints.TEST_PATH,
        "testWebhookEndpoint",
        "Send the webhook.test event to this endpoint (whatever its event filter).",
        "admin",
        {202: _ACCEPTED_EVENT, **_ENDPOINT_NOT_FOUND},
    ),
    Operation(
        "post",
        webhook_endpoints.RECOVER_PATH,
        "recoverWebhookEndpoint",
        "Re-dispatch every failed delivery of this endpoint in a time window (same eventIds).",
        "admin",
        {
            202: Answer("Handed to the dispatcher.", RecoveryAccepted),
            **_ENDPOINT_NOT_FOUND,
            **_QUERY_ERRORS,
        },
        query=RecoverQuery,
    ),
    Operation(
        "get",
        notification_preferences.PATH,
        "listNotificationPreferences",
        "The calling customer's preferences (role CUSTOMER; the customer comes from the token).",
        "customer",
        {200: Answer("The stored preferences.", PreferenceList)},
    ),
    Operation(
        "put",
        notification_preferences.PATH,
        "putNotificationPreference",
        "Save the calling customer's preference for one event type.",
        "customer",
        {
            200: Answer("Saved.", PreferenceView),
            404: Answer("No such event type for this tenant."),
            **_BODY_ERRORS,
        },
        body=PreferenceUpdate,
    ),
    Operation(
        "get",
        delivery_logs.BY_CUSTOMER_PATH,
        "listDeliveryLogsByCustomer",
        "A customer's dispatch audit trail, newest first, cursor-paginated.",
        "admin",
        {200: Answer("One page.", DeliveryLogPage), **_QUERY_ERRORS},
        query=DeliveryLogQuery,
    ),
    Operation(
        "post",
        delivery_logs.REPLAY_PATH,
        "replayDelivery",
        "Re-dispatch one FAILED or SKIPPED webhook delivery (same eventId, new attempts).",
        "admin",
        {
            202: _ACCEPTED_EVENT,
            404: Answer("No such delivery for this tenant."),
            409: Answer("Not replayable (its status or channel), or its endpoint was deleted."),
        },
    ),
    Operation(
        "post",
        embed_keys.EMBED_KEYS_PATH,
        "createEmbedKey",
        "Mint a public embed key for the origins (exact `https://host[:port]`) allowed to embed widgets.",
        "admin",
        {
            201: Answer("Minted.", embed_keys.EmbedKeyView, {"Location": "The key's path."}),
            **_BODY_ERRORS,
        },
        body=embed_keys.EmbedKeyCreate,
    ),
    Operation(
        "get",
        embed_keys.EMBED_KEYS_PATH,
        "listEmbedKeys",
        "The tenant's embed keys, revoked ones included, oldest first.",
        "admin",
        {200: Answer("The keys.", embed_keys.EmbedKeyList)},
    ),
    Operation(
        "patch",
        embed_keys.EMBED_KEY_PATH,
        "updateEmbedKey",
        "Replace an active embed key's allowed origins.",
        "admin",
        {
            200: Answer("Changed.", embed_keys.EmbedKeyView),
            **_EMBED_KEY_NOT_FOUND,
            409: Answer("The key is revoked."),
            **_BODY_ERRORS,
        },
        body=embed_keys.EmbedKeyUpdate,
    ),
    Operation(
        "delete",
        embed_keys.EMBED_KEY_PATH,
        "revokeEmbedKey",
        "Revoke an embed key (idempotent); gateways end its streams within their sweep interval.",
        "admin",
        {204: Answer("Revoked."), **_EMBED_KEY_NOT_FOUND},
    ),
    Operation(
        "post",
        embed_keys.SIGNING_KEYS_PATH,
        "mintBridgeSigningKey",
        "Mint an auth-bridge signing key as NEXT; its secret is in this answer and never again.",
        "admin",
        {201: Answer("Minted.", embed_keys.MintedSigningKey, {"Location": "The key's path."})},
    ),
    Operation(
        "get",
        embed_keys.SIGNING_KEYS_PATH,
        "listBridgeSigningKeys",
        "The tenant's bridge signing keys with their effective status, never their secrets.",
        "admin",
        {200: Answer("The keys.", embed_keys.SigningKeyList)},
    ),
    Operation(
        "post",
        embed_keys.PROMOTE_PATH,
        "promoteBridgeSigningKey",
        "NEXT → ACTIVE; the previous ACTIVE key keeps verifying for the overlap, then is RETIRED.",
        "admin",
        {
            200: Answer("Promoted.", embed_keys.SigningKeyView),
            **_SIGNING_KEY_NOT_FOUND,
            409: Answer("The key is not NEXT."),
        },
    ),
    Operation(
        "delete",
        embed_keys.SIGNING_KEY_PATH,
        "revokeBridgeSigningKey",
        "Revoke a bridge signing key (idempotent); tokens it signed stop verifying.",
        "admin",
        {204: Answer("Revoked."), **_SIGNING_KEY_NOT_FOUND},
    ),
    Operation(
        "post",
        embed_keys.REVOKE_SESSIONS_PATH,
        "revokeEmbedSessions",
        "End every live embed session of one customer on every gateway replica.",
        "admin",
        {200: Answer("How many sessions were revoked.", embed_keys.SessionsRevoked), **_BODY_ERRORS},
        body=embed_keys.EmbedSessionRevocation,
    ),
    Operation(
        "put",
        channel_providers.ITEM_PATH,
        "putChannelProvider",
        "Save the tenant's EMAIL, SMS or PAGERDUTY provider (the body of the path's channel); secrets are "
        "write-only and a secret left out keeps the stored one.",
        "admin",
        {
            200: Answer("Replaced.", ChannelProviderView),
            201: Answer("Created.", ChannelProviderView),
            404: Answer("The channel is not EMAIL, SMS or PAGERDUTY."),
            **_BODY_ERRORS,
        },
        body=ChannelProviderBody,
    ),
    Operation(
        "get",
        channel_providers.COLLECTION_PATH,
        "listChannelProviders",
        "The tenant's channel providers (secrets shown as at most their last 4 characters).",
        "admin",
        {200: Answer("The providers.", ChannelProviderList)},
    ),
    Operation(
        "delete",
        channel_providers.ITEM_PATH,
        "deleteChannelProvider",
        "Remove a channel provider; deliveries on that channel then fail `provider_not_configured`.",
        "admin",
        {204: Answer("Removed."), 404: Answer("No provider of this channel for this tenant.")},
    ),
    Operation(
        "post",
        contact_destinations.COLLECTION_PATH,
        "registerContactDestination",
        "Register where a customer is reached on EMAIL, SMS or PAGERDUTY (a routing key is write-only).",
        "admin",
        {
            201: Answer("Registered.", DestinationView, {"Location": "The destination's path."}),
            409: Answer("The customer already has this address on this channel."),
            **_BODY_ERRORS,
        },
        body=DestinationRegistration,
    ),
    Operation(
        "get",
        contact_destinations.COLLECTION_PATH,
        "listContactDestinations",
        "One customer's contact destinations, oldest first.",
        "admin",
        {200: Answer("The destinations.", DestinationList), **_QUERY_ERRORS},
        query=DestinationListQuery,
    ),
    Operation(
        "patch",
        contact_destinations.ITEM_PATH,
        "updateContactDestination",
        "Change a destination's active flag, events or label.",
        "admin",
        {200: Answer("Changed.", DestinationView), **_DESTINATION_NOT_FOUND, **_BODY_ERRORS},
        body=DestinationUpdate,
    ),
    Operation(
        "delete",
        contact_destinations.ITEM_PATH,
        "deleteContactDestination",
        "Remove a contact destination.",
        "admin",
        {204: Answer("Removed."), **_DESTINATION_NOT_FOUND},
    ),
    Operation(
        "post",
        contact_destinations.TEST_PATH,
        "testContactDestination",
        "Send the notification.test event to this destination through the tenant's real provider.",
        "admin",
        {
            202: _ACCEPTED_EVENT,
            **_DESTINATION_NOT_FOUND,
            409: Answer("The tenant has no provider for the destination's channel."),
        },
    ),
    Operation(
        "post",
        contact_destinations.RECOVER_PATH,
        "recoverContactDestination",
        "Re-dispatch every failed delivery of this destination in a time window (same eventIds).",
        "admin",
        {
            202: Answer("Handed to the dispatcher.", RecoveryAccepted),
            **_DESTINATION_NOT_FOUND,
            **_QUERY_ERRORS,
        },
        query=RecoverQuery,
    ),
    Operation(
        "put",
        channel_templates.ITEM_PATH,
        "putChannelTemplate",
        "Override the template of one event type on one channel; rendered against a sample event first.",
        "admin",
        {
            200: Answer("Saved, with the sample rendering.", TemplateView),
            404: Answer("No such event type for this tenant, or not a templated channel."),
            **_BODY_ERRORS,
        },
        body=TemplateOverrideBody,
    ),
    Operation(
        "get",
        channel_templates.ITEM_PATH,
        "getChannelTemplate",
        "The tenant's override of one event type on one channel, or the built-in template.",
        "admin",
        {
            200: Answer("The template and its sample rendering.", TemplateView),
            404: Answer("No such event type for this tenant, or not a templated channel."),
        },
    ),
)

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


def _model_refs(operations: tuple[Operation, ...]) -> tuple[ModelRefs, dict[str, Any]]:
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
    """The whole document (built once; it depends on code only)."""
    refs, components = _model_refs(OPERATIONS)
    paths: dict[str, dict[str, Any]] = {}
    for operation in OPERATIONS:
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
