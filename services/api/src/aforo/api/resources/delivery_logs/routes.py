"""The dispatcher's delivery log, read: the by-customer audit trail and the replay of one delivery."""

from __future__ import annotations

from datetime import datetime
from typing import Final

from aiohttp import web
from bson import ObjectId

from aforo.api.auth import require_admin
from aforo.api.boundary import accepted, read_query
from aforo.api.operations import ACCEPTED_EVENT, QUERY_ERRORS, Answer, Resource, operation
from aforo.api.problems import ConflictError, NotFoundError
from aforo.api.redelivery import replay_request
from aforo.api.resources.delivery_logs.rules import (
    DeliveryLogPage,
    DeliveryLogQuery,
    decode_cursor,
    encode_cursor,
    log_conditions,
    log_row_view,
    log_window,
)
from aforo.shared.delivery import ENVELOPE_FIELD, LEGACY_ENVELOPE_FIELD, Channel
from aforo.shared.http import json_response
from aforo.shared.logging import bind_event_context, get_logger

log = get_logger(__name__)

BY_CUSTOMER_PATH: Final = "/internal/v1/delivery-logs/by-customer"
REPLAY_PATH: Final = "/api/v1/deliveries/{deliveryId}/replay"
# The audit trail leaves out the stored envelope (the payload); a replay reads it here, server-side.
LISTED_FIELDS: Final = {ENVELOPE_FIELD: 0, LEGACY_ENVELOPE_FIELD: 0}


class DeliveryLogRoutes(Resource):
    @operation(
        "get",
        BY_CUSTOMER_PATH,
        "listDeliveryLogsByCustomer",
        "A customer's dispatch audit trail, newest first, cursor-paginated.",
        answers={200: Answer("One page.", DeliveryLogPage), **QUERY_ERRORS},
        query=DeliveryLogQuery,
    )
    async def by_customer(self, request: web.Request) -> web.Response:
        """Another tenant's customer id has no rows here: an empty page, like any unknown id."""
        principal = require_admin(request)
        query = read_query(request, DeliveryLogQuery)
        after: tuple[datetime, object] | None = None
        if query.cursor is not None:
            position = decode_cursor(query.cursor)
            row_id = ObjectId(position.row_id) if position.row_id_is_object_id else position.row_id
            after = (position.created_at, row_id)
        rows = await self.context.audit_trail.newest_first(
            principal.tenant_id,
            query.end_customer_id,
            log_window(query, after),
            where=log_conditions(query),
            projection=LISTED_FIELDS,
            limit=query.limit + 1,
        )
        next_cursor = None
        if len(rows) > query.limit:
            rows = rows[: query.limit]
            last = rows[-1]
            next_cursor = encode_cursor(
                last["createdAt"], str(last["_id"]), row_id_is_object_id=isinstance(last["_id"], ObjectId)
            )
        page = DeliveryLogPage(items=[log_row_view(row) for row in rows], next_cursor=next_cursor)
        return json_response(page.to_wire())

    @operation(
        "post",
        REPLAY_PATH,
        "replayDelivery",
        "Re-dispatch one FAILED or SKIPPED webhook delivery (same eventId, new attempts).",
        answers={
            202: ACCEPTED_EVENT,
            404: Answer("No such delivery for this tenant."),
            409: Answer("Not replayable (its status or channel), or its endpoint was deleted."),
        },
    )
    async def replay(self, request: web.Request) -> web.Response:
        principal = require_admin(request)
        delivery_id = request.match_info["deliveryId"]
        # A row's `_id` is its deliveryId (rows written before that carried it only as a field).
        row = await self.context.delivery_logs.find_one(
            {"_id": delivery_id, "tenantId": principal.tenant_id}, {"_id": 0}
        ) or await self.context.delivery_logs.find_one(
            {"tenantId": principal.tenant_id, "deliveryId": delivery_id}, {"_id": 0}
        )
        if row is None:
            raise NotFoundError("delivery_not_found", "no such delivery for this tenant", "deliveryId")
        replay = replay_request(row, now=self.context.clock())
        if replay.channel is Channel.WEBHOOK:
            target = await self.context.endpoints.find_one(
                {"tenantId": principal.tenant_id, "endpointId": replay.endpoint_id}, {"_id": 1}
            )
        else:
            target = await self.context.contact_destinations.find_one(
                {"tenantId": principal.tenant_id, "destinationId": replay.endpoint_id}, {"_id": 1}
            )
        if target is None:
            raise ConflictError(
                "endpoint_missing",
                "the endpoint or destination of this delivery was deleted",
                "endpointId",
            )
        await self.context.publisher.dispatch_requests([replay])
        with bind_event_context(event_id=replay.envelope.event_id):
            log.info("delivery_replay_requested", delivery_id=delivery_id, endpoint_id=replay.endpoint_id)
        return accepted(replay.envelope.event_id)
