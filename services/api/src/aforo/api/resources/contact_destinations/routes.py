"""`/api/v1/contact-destinations`: where end customers are reached on EMAIL, SMS and PAGERDUTY.

    POST   /api/v1/contact-destinations                        register → 201 (409: same address)
    GET    /api/v1/contact-destinations?endCustomerId=         one customer's destinations
    PATCH  /api/v1/contact-destinations/{destinationId}        active, events, label
    DELETE /api/v1/contact-destinations/{destinationId}        remove → 204
    POST   /api/v1/contact-destinations/{destinationId}/test   send notification.test → 202

Roles OWNER, ADMIN or BILLING_ADMIN; another tenant's destination is a 404. A routing key is stored
encrypted and never returned, published or logged; addresses are logged masked only.
"""

from __future__ import annotations

import uuid
from typing import Final

from aiohttp import web
from pymongo.errors import DuplicateKeyError

from aforo.api import changes
from aforo.api.auth import require_admin
from aforo.api.boundary import accepted, read_body, read_query
from aforo.api.context import ApiContext
from aforo.api.operations import ACCEPTED_EVENT, BODY_ERRORS, QUERY_ERRORS, Answer, Resource, operation
from aforo.api.problems import ConflictError, NotFoundError
from aforo.api.recovery import recover_failed, recovery_accepted
from aforo.api.redelivery import RecoverQuery, RecoveryAccepted
from aforo.api.resources.contact_destinations.rules import (
    DestinationList,
    DestinationListQuery,
    DestinationRegistration,
    DestinationUpdate,
    DestinationView,
    destination_changes,
    destination_test_request,
    destination_view,
    new_destination_document,
)
from aforo.api.tenant_documents import TenantDocuments
from aforo.shared.channels import new_destination_id, public_document
from aforo.shared.config_changes import ConfigKind
from aforo.shared.http import json_response
from aforo.shared.logging import bind_event_context, get_logger

log = get_logger(__name__)

COLLECTION_PATH: Final = "/api/v1/contact-destinations"
ITEM_PATH: Final = "/api/v1/contact-destinations/{destinationId}"
TEST_PATH: Final = "/api/v1/contact-destinations/{destinationId}/test"
RECOVER_PATH: Final = "/api/v1/contact-destinations/{destinationId}/recover"
KIND: Final = ConfigKind.CONTACT_DESTINATION
NO_ID: Final = {"_id": 0}
NOT_FOUND: Final = {404: Answer("No such contact destination for this tenant.")}


def not_found(destination_id: str) -> NotFoundError:
    return NotFoundError(
        "destination_not_found", "no such contact destination for this tenant", "destinationId"
    )


class ContactDestinationRoutes(Resource):
    def __init__(self, context: ApiContext) -> None:
        super().__init__(context)
        self.destinations = TenantDocuments(lambda: context.contact_destinations, "destinationId", not_found)

    @operation(
        "post",
        COLLECTION_PATH,
        "registerContactDestination",
        "Register where a customer is reached on EMAIL, SMS or PAGERDUTY (a routing key is write-only).",
        answers={
            201: Answer("Registered.", DestinationView, {"Location": "The destination's path."}),
            409: Answer("The customer already has this address on this channel."),
            **BODY_ERRORS,
        },
        body=DestinationRegistration,
    )
    async def register(self, request: web.Request) -> web.Response:
        principal = require_admin(request)
        body = await read_body(request, DestinationRegistration, self.context.body_limit)
        now = self.context.clock()
        document = new_destination_document(
            principal.tenant_id,
            body,
            destination_id=new_destination_id(),
            encrypt=self.context.secret_box.encrypt,
            now=now,
        )
        try:
            await self.context.contact_destinations.insert_one(dict(document))
        except DuplicateKeyError:
            raise ConflictError(
                "destination_address_exists",
                f"this customer already has this {body.channel} address",
                "address",
            ) from None
        destination_id = str(document["destinationId"])
        log.info(
            "contact_destination_registered",
            destination_id=destination_id,
            channel=body.channel,
            address=document["maskedAddress"],
        )
        await self.context.publisher.config_change(
            changes.upserted(KIND, destination_id, public_document(document), now=now)
        )
        response = json_response(destination_view(document).to_wire(), status=201)
        response.headers["Location"] = ITEM_PATH.format(destinationId=destination_id)
        return response

    @operation(
        "get",
        COLLECTION_PATH,
        "listContactDestinations",
        "One customer's contact destinations, oldest first.",
        answers={200: Answer("The destinations.", DestinationList), **QUERY_ERRORS},
        query=DestinationListQuery,
    )
    async def list_for_customer(self, request: web.Request) -> web.Response:
        principal = require_admin(request)
        query = read_query(request, DestinationListQuery)
        documents = await self.destinations.for_customer(principal.tenant_id, query.end_customer_id, NO_ID)
        return json_response(DestinationList(items=[destination_view(each) for each in documents]).to_wire())

    @operation(
        "patch",
        ITEM_PATH,
        "updateContactDestination",
        "Change a destination's active flag, events or label.",
        answers={200: Answer("Changed.", DestinationView), **NOT_FOUND, **BODY_ERRORS},
        body=DestinationUpdate,
    )
    async def update(self, request: web.Request) -> web.Response:
        principal = require_admin(request)
        destination_id = request.match_info["destinationId"]
        body = await read_body(request, DestinationUpdate, self.context.body_limit)
        fields = destination_changes(body)
        now = self.context.clock()
        document = await self.destinations.update(
            principal.tenant_id, destination_id, fields, now=now, projection=NO_ID
        )
        log.info("contact_destination_updated", destination_id=destination_id, version=document["version"])
        await self.context.publisher.config_change(
            changes.upserted(KIND, destination_id, public_document(document), now=now)
        )
        return json_response(destination_view(document).to_wire())

    @operation(
        "delete",
        ITEM_PATH,
        "deleteContactDestination",
        "Remove a contact destination.",
        answers={204: Answer("Removed."), **NOT_FOUND},
    )
    async def delete(self, request: web.Request) -> web.Response:
        principal = require_admin(request)
        destination_id = request.match_info["destinationId"]
        version = await self.destinations.delete(principal.tenant_id, destination_id)
        log.info("contact_destination_deleted", destination_id=destination_id, version=version)
        await self.context.publish_deletion(KIND, principal.tenant_id, destination_id, version=version)
        return web.Response(status=204)

    @operation(
        "post",
        TEST_PATH,
        "testContactDestination",
        "Send the notification.test event to this destination through the tenant's real provider.",
        answers={
            202: ACCEPTED_EVENT,
            **NOT_FOUND,
            409: Answer("The tenant has no provider for the destination's channel."),
        },
    )
    async def test(self, request: web.Request) -> web.Response:
        """Inactive destinations too (testing before re-enabling is the point); 409 without a provider."""
        principal = require_admin(request)
        destination = await self.destinations.find(
            principal.tenant_id, request.match_info["destinationId"], NO_ID
        )
        provider = await self.context.channel_providers.find_one(
            {"tenantId": principal.tenant_id, "channel": destination["channel"]}, {"_id": 1}
        )
        if provider is None:
            raise ConflictError(
                "provider_not_configured",
                f"configure the {destination['channel']} provider before testing its destinations",
                "channel",
            )
        probe = destination_test_request(destination, event_id=str(uuid.uuid4()), now=self.context.clock())
        await self.context.publisher.dispatch_requests([probe])
        with bind_event_context(event_id=probe.envelope.event_id):
            log.info("contact_destination_test_requested", destination_id=probe.endpoint_id)
        return accepted(probe.envelope.event_id)

    @operation(
        "post",
        RECOVER_PATH,
        "recoverContactDestination",
        "Re-dispatch every failed delivery of this destination in a time window (same eventIds).",
        answers={
            202: Answer("Handed to the dispatcher.", RecoveryAccepted),
            **NOT_FOUND,
            **QUERY_ERRORS,
        },
        query=RecoverQuery,
    )
    async def recover(self, request: web.Request) -> web.Response:
        """Replay every FAILED delivery of this destination in a window (same eventIds and keys)."""
        principal = require_admin(request)
        destination_id = request.match_info["destinationId"]
        destination = await self.destinations.find(principal.tenant_id, destination_id, NO_ID)
        query = read_query(request, RecoverQuery)
        requested = await recover_failed(
            self.context, principal.tenant_id, str(destination["endCustomerId"]), destination_id, query
        )
        log.info("contact_destination_recovery_requested", destination_id=destination_id, requested=requested)
        return recovery_accepted(requested)
