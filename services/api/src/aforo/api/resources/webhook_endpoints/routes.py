"""`/api/v1/webhook-endpoints`: register, list, change, remove, probe and recover webhook endpoints.

Secrets are encrypted before they are stored and left out of every response, config change and log
line. An endpoint's `version` is its own counter (`$inc`): its id is a fresh uuid4, never reused
after a delete, so no counter has to outlive the document.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Final

from aiohttp import web
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from aforo.api import changes
from aforo.api.auth import require_admin
from aforo.api.boundary import accepted, read_body, read_query
from aforo.api.context import ApiContext
from aforo.api.operations import ACCEPTED_EVENT, BODY_ERRORS, QUERY_ERRORS, Answer, Resource, operation
from aforo.api.problems import ConflictError, NotFoundError
from aforo.api.recovery import recover_failed, recovery_accepted
from aforo.api.redelivery import (
    RecoverQuery,
    RecoveryAccepted,
    webhook_test_request,
)
from aforo.api.resources.webhook_endpoints.rules import (
    EndpointList,
    EndpointListQuery,
    EndpointRegistration,
    EndpointUpdate,
    EndpointView,
    endpoint_changes,
    endpoint_view,
    new_endpoint_document,
)
from aforo.api.tenant_documents import TenantDocuments
from aforo.shared.config_changes import ConfigKind
from aforo.shared.http import json_response
from aforo.shared.logging import bind_event_context, get_logger

log = get_logger(__name__)

COLLECTION_PATH: Final = "/api/v1/webhook-endpoints"
ITEM_PATH: Final = "/api/v1/webhook-endpoints/{endpointId}"
TEST_PATH: Final = "/api/v1/webhook-endpoints/{endpointId}/test"
RECOVER_PATH: Final = "/api/v1/webhook-endpoints/{endpointId}/recover"
KIND: Final = ConfigKind.WEBHOOK_ENDPOINT
MAX_VERSION_RACES: Final = 5
# Secrets stay in MongoDB unless a write needs them (the rotation reads them back).
WITHOUT_CIPHERTEXTS: Final = {"_id": 0, "secrets.ciphertext": 0}
NOT_FOUND: Final = {404: Answer("No such endpoint for this tenant.")}


def not_found(endpoint_id: str) -> NotFoundError:
    return NotFoundError("endpoint_not_found", "no such webhook endpoint for this tenant", "endpointId")


class WebhookEndpointRoutes(Resource):
    def __init__(self, context: ApiContext) -> None:
        super().__init__(context)
        self.endpoints = TenantDocuments(lambda: context.endpoints, "endpointId", not_found)

    @operation(
        "post",
        COLLECTION_PATH,
        "registerWebhookEndpoint",
        "Register a customer's webhook endpoint; the secret is stored encrypted and never returned.",
        answers={
            201: Answer("Registered.", EndpointView, {"Location": "The endpoint's path."}),
            409: Answer("The customer already has an endpoint with this URL."),
            **BODY_ERRORS,
        },
        body=EndpointRegistration,
    )
    async def register(self, request: web.Request) -> web.Response:
        principal = require_admin(request)
        body = await read_body(request, EndpointRegistration, self.context.body_limit)
        ciphertext = self.context.secret_box.encrypt(body.secret.get_secret_value())
        now = self.context.clock()
        document = new_endpoint_document(
            principal.tenant_id, body, endpoint_id=str(uuid.uuid4()), ciphertext=ciphertext, now=now
        )
        try:
            await self.context.endpoints.insert_one(document)
        except DuplicateKeyError:
            raise ConflictError(
                "endpoint_url_exists", "this customer already has an endpoint with this URL", "url"
            ) from None
        endpoint_id = str(document["endpointId"])
        log.info("webhook_endpoint_registered", endpoint_id=endpoint_id, end_customer_id=body.end_customer_id)
        await self.context.publisher.config_change(changes.upserted(KIND, endpoint_id, document, now=now))
        response = json_response(endpoint_view(document).to_wire(), status=201)
        response.headers["Location"] = ITEM_PATH.format(endpointId=endpoint_id)
        return response

    @operation(
        "get",
        COLLECTION_PATH,
        "listWebhookEndpoints",
        "One customer's endpoints (without secrets).",
        answers={200: Answer("The endpoints, oldest first.", EndpointList), **QUERY_ERRORS},
        query=EndpointListQuery,
    )
    async def list_for_customer(self, request: web.Request) -> web.Response:
        """Another tenant's customer id simply has no endpoints here: an empty list, like any unknown id."""
        principal = require_admin(request)
        query = read_query(request, EndpointListQuery)
        documents = await self.endpoints.for_customer(
            principal.tenant_id, query.end_customer_id, WITHOUT_CIPHERTEXTS
        )
        return json_response(EndpointList(items=[endpoint_view(each) for each in documents]).to_wire())

    @operation(
        "patch",
        ITEM_PATH,
        "updateWebhookEndpoint",
        "Change the active flag, events or retry policy; a new secret is a rotation.",
        answers={
            200: Answer("Changed.", EndpointView),
            **NOT_FOUND,
            409: Answer("Changed concurrently too often; retry."),
            **BODY_ERRORS,
        },
        body=EndpointUpdate,
    )
    async def update(self, request: web.Request) -> web.Response:
        principal = require_admin(request)
        endpoint_id = request.match_info["endpointId"]
        body = await read_body(request, EndpointUpdate, self.context.body_limit)
        new_ciphertext = (
            None if body.secret is None else self.context.secret_box.encrypt(body.secret.get_secret_value())
        )
        overlap = timedelta(seconds=self.context.settings.secret_rotation_overlap_seconds)
        for _ in range(MAX_VERSION_RACES):
            current = await self.endpoints.find(principal.tenant_id, endpoint_id, {"_id": 0})
            now = self.context.clock()
            fields = endpoint_changes(current, body, new_ciphertext=new_ciphertext, now=now, overlap=overlap)
            # Conditional on the version read: a rotation computed from stale secrets is never written.
            document = await self.context.endpoints.find_one_and_update(
                {**self.endpoints.key(principal.tenant_id, endpoint_id), "version": current.get("version")},
                {"$set": {**fields, "updatedAt": now}, "$inc": {"version": 1}},
                projection=WITHOUT_CIPHERTEXTS,
                return_document=ReturnDocument.AFTER,
            )
            if document is not None:
                break
        else:
            raise ConflictError("concurrent_update", "the endpoint is being changed concurrently; retry")
        log.info(
            "webhook_endpoint_updated",
            endpoint_id=endpoint_id,
            version=document["version"],
            secret_rotated=new_ciphertext is not None,
        )
        await self.context.publisher.config_change(changes.upserted(KIND, endpoint_id, document, now=now))
        return json_response(endpoint_view(document).to_wire())

    @operation(
        "delete",
        ITEM_PATH,
        "deleteWebhookEndpoint",
        "Remove an endpoint permanently.",
        answers={204: Answer("Removed."), **NOT_FOUND},
    )
    async def delete(self, request: web.Request) -> web.Response:
        principal = require_admin(request)
        endpoint_id = request.match_info["endpointId"]
        version = await self.endpoints.delete(principal.tenant_id, endpoint_id)
        log.info("webhook_endpoint_deleted", endpoint_id=endpoint_id, version=version)
        await self.context.publish_deletion(KIND, principal.tenant_id, endpoint_id, version=version)
        return web.Response(status=204)

    @operation(
        "post",
        TEST_PATH,
        "testWebhookEndpoint",
        "Send the webhook.test event to this endpoint (whatever its event filter).",
        answers={202: ACCEPTED_EVENT, **NOT_FOUND},
    )
    async def test(self, request: web.Request) -> web.Response:
        """The `webhook.test` probe; inactive endpoints too (testing before re-enabling is the point)."""
        principal = require_admin(request)
        endpoint = await self.endpoints.find(
            principal.tenant_id, request.match_info["endpointId"], WITHOUT_CIPHERTEXTS
        )
        probe = webhook_test_request(endpoint, event_id=str(uuid.uuid4()), now=self.context.clock())
        await self.context.publisher.dispatch_requests([probe])
        with bind_event_context(event_id=probe.envelope.event_id):
            log.info("webhook_test_requested", endpoint_id=probe.endpoint_id)
        return accepted(probe.envelope.event_id)

    @operation(
        "post",
        RECOVER_PATH,
        "recoverWebhookEndpoint",
        "Re-dispatch every failed delivery of this endpoint in a time window (same eventIds).",
        answers={
            202: Answer("Handed to the dispatcher.", RecoveryAccepted),
            **NOT_FOUND,
            **QUERY_ERRORS,
        },
        query=RecoverQuery,
    )
    async def recover(self, request: web.Request) -> web.Response:
        principal = require_admin(request)
        endpoint_id = request.match_info["endpointId"]
        endpoint = await self.endpoints.find(principal.tenant_id, endpoint_id, {"endCustomerId": 1})
        query = read_query(request, RecoverQuery)
        requested = await recover_failed(
            self.context, principal.tenant_id, str(endpoint["endCustomerId"]), endpoint_id, query
        )
        log.info("webhook_endpoint_recovery_requested", endpoint_id=endpoint_id, requested=requested)
        return recovery_accepted(requested)
