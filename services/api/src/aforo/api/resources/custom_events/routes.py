"""`POST /api/v1/notification-event-definitions/{eventType}/emit`: a manual CUSTOM event.

Answered 202 with no body once the broker has acknowledged the envelope; the new `eventId` is in the
`X-Aforo-Event-Id` header, so the caller can find its deliveries in the delivery log.
"""

from __future__ import annotations

import uuid
from typing import Final

from aiohttp import web

from aforo.api.auth import require_admin
from aforo.api.boundary import accepted, read_body
from aforo.api.operations import ACCEPTED_EVENT, BODY_ERRORS, Resource, operation
from aforo.api.problems import NotFoundError
from aforo.api.resources.custom_events.rules import EmitRequest, custom_envelope
from aforo.api.resources.event_definitions.routes import NOT_FOUND as DEFINITION_NOT_FOUND
from aforo.shared.logging import bind_event_context, get_logger

log = get_logger(__name__)

EMIT_PATH: Final = "/api/v1/notification-event-definitions/{eventType}/emit"


class EmitRoutes(Resource):
    @operation(
        "post",
        EMIT_PATH,
        "emitCustomEvent",
        "Emit a CUSTOM event for one customer; dispatched like a triggered one.",
        answers={202: ACCEPTED_EVENT, **DEFINITION_NOT_FOUND, **BODY_ERRORS},
        body=EmitRequest,
    )
    async def emit(self, request: web.Request) -> web.Response:
        principal = require_admin(request)
        event_type = request.match_info["eventType"]
        definition = await self.context.definitions.find_one(
            {"tenantId": principal.tenant_id, "eventType": event_type}, {"_id": 0}
        )
        if definition is None:
            raise NotFoundError(
                "event_definition_not_found", "no such CUSTOM event definition for this tenant", "eventType"
            )
        body = await read_body(request, EmitRequest, self.context.body_limit)
        envelope = custom_envelope(
            definition, principal.tenant_id, body, event_id=str(uuid.uuid4()), now=self.context.clock()
        )
        await self.context.publisher.envelope(envelope)
        with bind_event_context(event_id=envelope.event_id):
            log.info("custom_event_emitted", event_type=event_type)
        return accepted(envelope.event_id)
