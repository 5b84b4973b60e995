"""`/api/v1/admin/event-definitions`: the tenant's catalog, and its CUSTOM definitions' lifecycle.

Every write is MongoDB first, then a `ConfigChange` on `config.changes` (awaited) so the trigger's
rule cache follows within a poll. Versions come from `config_versions`, which outlives a deleted
definition: a type deleted and defined again gets a version above its delete.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from aforo.api import changes
from aforo.api.auth import require_admin
from aforo.api.boundary import read_body
from aforo.api.operations import BODY_ERRORS, Answer, Resource, operation
from aforo.api.problems import ConflictError, NotFoundError
from aforo.api.resources.event_definitions.rules import (
    EventDefinitionCreate,
    EventDefinitionList,
    EventDefinitionUpdate,
    EventDefinitionView,
    check_new_definition,
    custom_definition_view,
    definition_changes,
    ensure_custom,
    new_definition_document,
    system_definition_views,
)
from aforo.shared.config_changes import ConfigKind
from aforo.shared.http import json_response
from aforo.shared.logging import get_logger

log = get_logger(__name__)

COLLECTION_PATH: Final = "/api/v1/admin/event-definitions"
ITEM_PATH: Final = "/api/v1/admin/event-definitions/{eventType}"
KIND: Final = ConfigKind.EVENT_DEFINITION
# A concurrent writer can take a version between ours being drawn and written; then we draw again.
MAX_VERSION_RACES: Final = 5
NOT_FOUND: Final = {404: Answer("No CUSTOM definition of this type for this tenant.")}


def not_found(event_type: str) -> NotFoundError:
    return NotFoundError(
        "event_definition_not_found", "no such CUSTOM event definition for this tenant", "eventType"
    )


class EventDefinitionRoutes(Resource):
    @operation(
        "get",
        COLLECTION_PATH,
        "listEventDefinitions",
        "The tenant's catalog: every SYSTEM event and the tenant's CUSTOM definitions.",
        answers={200: Answer("The catalog.", EventDefinitionList)},
    )
    async def list_catalog(self, request: web.Request) -> web.Response:
        principal = require_admin(request)
        cursor = self.context.definitions.find({"tenantId": principal.tenant_id}).sort("eventType", 1)
        custom = [custom_definition_view(document) async for document in cursor]
        return json_response(EventDefinitionList(items=system_definition_views() + custom).to_wire())

    @operation(
        "post",
        COLLECTION_PATH,
        "createEventDefinition",
        "Define a CUSTOM event type, optionally with a trigger rule.",
        answers={
            201: Answer("Defined.", EventDefinitionView, {"Location": "The definition's path."}),
            409: Answer("The type exists (SYSTEM names and webhook.test included)."),
            **BODY_ERRORS,
        },
        body=EventDefinitionCreate,
    )
    async def create(self, request: web.Request) -> web.Response:
        principal = require_admin(request)
        body = await read_body(request, EventDefinitionCreate, self.context.body_limit)
        check_new_definition(body)
        exists_query = {"tenantId": principal.tenant_id, "eventType": body.event_type}
        if await self.context.definitions.find_one(exists_query, {"_id": 1}) is not None:
            raise ConflictError("event_type_exists", "this event type is already defined", "eventType")
        version = await self.context.next_version(KIND, principal.tenant_id, body.event_type)
        now = self.context.clock()
        document = new_definition_document(principal.tenant_id, body, version=version, now=now)
        try:
            await self.context.definitions.insert_one(document)
        except DuplicateKeyError:
            raise ConflictError(
                "event_type_exists", "this event type is already defined", "eventType"
            ) from None
        log.info("event_definition_created", event_type=body.event_type, version=version)
        await self.context.publisher.config_change(changes.upserted(KIND, body.event_type, document, now=now))
        response = json_response(custom_definition_view(document).to_wire(), status=201)
        response.headers["Location"] = ITEM_PATH.format(eventType=body.event_type)
        return response

    @operation(
        "patch",
        ITEM_PATH,
        "updateEventDefinition",
        "Change a CUSTOM definition; SYSTEM rows are read-only.",
        answers={
            200: Answer("Changed.", EventDefinitionView),
            **NOT_FOUND,
            409: Answer("A SYSTEM or reserved type."),
            **BODY_ERRORS,
        },
        body=EventDefinitionUpdate,
    )
    async def update(self, request: web.Request) -> web.Response:
        principal = require_admin(request)
        event_type = request.match_info["eventType"]
        ensure_custom(event_type)
        body = await read_body(request, EventDefinitionUpdate, self.context.body_limit)
        fields = definition_changes(body)
        query = {"tenantId": principal.tenant_id, "eventType": event_type}
        if await self.context.definitions.find_one(query, {"_id": 1}) is None:
            raise not_found(event_type)
        for _ in range(MAX_VERSION_RACES):
            version = await self.context.next_version(KIND, principal.tenant_id, event_type)
            now = self.context.clock()
            document = await self.context.definitions.find_one_and_update(
                {**query, "version": {"$lt": version}},
                {"$set": {**fields, "version": version, "updatedAt": now}},
                return_document=ReturnDocument.AFTER,
            )
            if document is not None:
                break
            if await self.context.definitions.find_one(query, {"_id": 1}) is None:
                raise not_found(event_type)
        else:
            raise ConflictError(
                "concurrent_update", "the event definition is being changed concurrently; retry"
            )
        log.info("event_definition_updated", event_type=event_type, version=version)
        await self.context.publisher.config_change(changes.upserted(KIND, event_type, document, now=now))
        return json_response(custom_definition_view(document).to_wire())

    @operation(
        "delete",
        ITEM_PATH,
        "deleteEventDefinition",
        "Remove a CUSTOM definition; SYSTEM rows are read-only.",
        answers={
            204: Answer("Removed."),
            **NOT_FOUND,
            409: Answer("A SYSTEM or reserved type."),
        },
    )
    async def delete(self, request: web.Request) -> web.Response:
        principal = require_admin(request)
        event_type = request.match_info["eventType"]
        ensure_custom(event_type)
        removed = await self.context.definitions.find_one_and_delete(
            {"tenantId": principal.tenant_id, "eventType": event_type}
        )
        if removed is None:
            raise not_found(event_type)
        # Drawn after the delete, so it is above every version the definition ever had.
        version = await self.context.next_version(KIND, principal.tenant_id, event_type)
        log.info("event_definition_deleted", event_type=event_type, version=version)
        await self.context.publish_deletion(KIND, principal.tenant_id, event_type, version=version)
        return web.Response(status=204)
