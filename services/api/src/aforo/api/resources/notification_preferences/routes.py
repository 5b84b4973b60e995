"""`/api/v1/notification-preferences`: the portal's own preferences (role CUSTOMER).

The customer is always the token's `customer_id`, never a body field (an unknown field is 422).
An event type must be a SYSTEM event or one of the tenant's CUSTOM definitions; anything else,
another tenant's CUSTOM type included, is 404.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from aforo.api import changes
from aforo.api.auth import require_customer
from aforo.api.boundary import read_body
from aforo.api.operations import BODY_ERRORS, Answer, Resource, operation
from aforo.api.problems import NotFoundError
from aforo.api.resources.notification_preferences.rules import (
    EventTypeFacts,
    PreferenceList,
    PreferenceUpdate,
    PreferenceView,
    custom_event_facts,
    ensure_allowed,
    preference_fields,
    preference_view,
    system_event_facts,
)
from aforo.shared.config_changes import ConfigKind
from aforo.shared.http import json_response
from aforo.shared.logging import get_logger
from aforo.shared.mongo import Document

log = get_logger(__name__)

PATH: Final = "/api/v1/notification-preferences"
KIND: Final = ConfigKind.NOTIFICATION_PREFERENCE


class PreferenceRoutes(Resource):
    @operation(
        "get",
        PATH,
        "listNotificationPreferences",
        "The calling customer's preferences (role CUSTOMER; the customer comes from the token).",
        answers={200: Answer("The stored preferences.", PreferenceList)},
        role="customer",
    )
    async def list_own(self, request: web.Request) -> web.Response:
        principal = require_customer(request)
        cursor = self.context.preferences.find(
            {"tenantId": principal.tenant_id, "customerId": principal.customer_id}, {"_id": 0}
        ).sort("eventType", 1)
        items = [preference_view(document) async for document in cursor]
        return json_response(PreferenceList(items=items).to_wire())

    async def _facts(self, tenant_id: str, event_type: str) -> EventTypeFacts:
        facts = system_event_facts(event_type)
        if facts is not None:
            return facts
        definition = await self.context.definitions.find_one(
            {"tenantId": tenant_id, "eventType": event_type}, {"_id": 0, "eventType": 1, "thresholdField": 1}
        )
        if definition is None:
            raise NotFoundError("event_type_not_found", "no such event type for this tenant", "eventType")
        return custom_event_facts(definition)

    @operation(
        "put",
        PATH,
        "putNotificationPreference",
        "Save the calling customer's preference for one event type.",
        answers={
            200: Answer("Saved.", PreferenceView),
            404: Answer("No such event type for this tenant."),
            **BODY_ERRORS,
        },
        role="customer",
        body=PreferenceUpdate,
    )
    async def put(self, request: web.Request) -> web.Response:
        principal = require_customer(request)
        customer_id = principal.customer_id
        assert customer_id is not None  # require_customer refuses a token without one
        body = await read_body(request, PreferenceUpdate, self.context.body_limit)
        ensure_allowed(body, await self._facts(principal.tenant_id, body.event_type))
        key = {"tenantId": principal.tenant_id, "customerId": customer_id, "eventType": body.event_type}
        now = self.context.clock()
        update = {"$set": {**preference_fields(body), "updatedAt": now}, "$inc": {"version": 1}}
        document: Document | None
        try:
            document = await self.context.preferences.find_one_and_update(
                key, update, upsert=True, projection={"_id": 0}, return_document=ReturnDocument.AFTER
            )
        except DuplicateKeyError:
            # Two first writes raced to insert the row; the loser updates the winner's.
            document = await self.context.preferences.find_one_and_update(
                key, update, projection={"_id": 0}, return_document=ReturnDocument.AFTER
            )
        assert document is not None  # upserted, or inserted by the racing writer
        document_id = changes.preference_document_id(customer_id, body.event_type)
        log.info("notification_preference_saved", event_type=body.event_type, version=document["version"])
        await self.context.publisher.config_change(changes.upserted(KIND, document_id, document, now=now))
        return json_response(preference_view(document).to_wire())
