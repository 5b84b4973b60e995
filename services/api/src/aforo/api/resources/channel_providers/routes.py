"""`/api/v1/admin/channel-providers`: a tenant's EMAIL, SMS and PAGERDUTY provider settings.

    PUT    /api/v1/admin/channel-providers/{channel}   save (replace) → 201 created / 200 replaced
    GET    /api/v1/admin/channel-providers             list, secrets never shown
    DELETE /api/v1/admin/channel-providers/{channel}   remove → 204

Roles OWNER, ADMIN or BILLING_ADMIN; every query starts with the caller's tenant. Each write is
published as a config change without ciphertexts; its version comes from a counter that outlives a
deleted provider, so a cache never keeps a stale one.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from aforo.api import changes
from aforo.api.auth import require_admin
from aforo.api.boundary import read_json
from aforo.api.operations import BODY_ERRORS, Answer, Resource, operation
from aforo.api.problems import NotFoundError
from aforo.api.resources.channel_providers.rules import (
    ChannelProviderBody,
    ChannelProviderList,
    ChannelProviderView,
    parse_provider_body,
    provider_channel,
    provider_document,
    provider_view,
)
from aforo.shared.channels import public_document
from aforo.shared.config_changes import ConfigKind
from aforo.shared.http import json_response
from aforo.shared.logging import get_logger

log = get_logger(__name__)

COLLECTION_PATH: Final = "/api/v1/admin/channel-providers"
ITEM_PATH: Final = "/api/v1/admin/channel-providers/{channel}"
KIND: Final = ConfigKind.CHANNEL_PROVIDER


class ChannelProviderRoutes(Resource):
    @operation(
        "put",
        ITEM_PATH,
        "putChannelProvider",
        "Save the tenant's EMAIL, SMS or PAGERDUTY provider (the body of the path's channel); secrets are "
        "write-only and a secret left out keeps the stored one.",
        answers={
            200: Answer("Replaced.", ChannelProviderView),
            201: Answer("Created.", ChannelProviderView),
            404: Answer("The channel is not EMAIL, SMS or PAGERDUTY."),
            **BODY_ERRORS,
        },
        body=ChannelProviderBody,
    )
    async def put(self, request: web.Request) -> web.Response:
        principal = require_admin(request)
        channel = provider_channel(request.match_info["channel"])
        body = parse_provider_body(channel, await read_json(request, self.context.body_limit))
        key = {"tenantId": principal.tenant_id, "channel": channel.value}
        current = await self.context.channel_providers.find_one(key, {"_id": 0})
        version = await self.context.next_version(KIND, principal.tenant_id, channel.value)
        now = self.context.clock()
        document = provider_document(
            principal.tenant_id,
            channel,
            body,
            current=current,
            encrypt=self.context.secret_box.encrypt,
            outbound_allowlist=self.context.settings.outbound_allowlist,
            version=version,
            now=now,
        )
        await self.context.channel_providers.replace_one(key, document, upsert=True)
        log.info("channel_provider_saved", channel=channel.value, version=version, mode=document["mode"])
        await self.context.publisher.config_change(
            changes.upserted(KIND, channel.value, public_document(document), now=now)
        )
        return json_response(provider_view(document).to_wire(), status=200 if current else 201)

    @operation(
        "get",
        COLLECTION_PATH,
        "listChannelProviders",
        "The tenant's channel providers (secrets shown as at most their last 4 characters).",
        answers={200: Answer("The providers.", ChannelProviderList)},
    )
    async def list(self, request: web.Request) -> web.Response:
        principal = require_admin(request)
        cursor = self.context.channel_providers.find({"tenantId": principal.tenant_id}, {"_id": 0}).sort(
            "channel", 1
        )
        items = [provider_view(document) async for document in cursor]
        return json_response(ChannelProviderList(items=items).to_wire())

    @operation(
        "delete",
        ITEM_PATH,
        "deleteChannelProvider",
        "Remove a channel provider; deliveries on that channel then fail `provider_not_configured`.",
        answers={204: Answer("Removed."), 404: Answer("No provider of this channel for this tenant.")},
    )
    async def delete(self, request: web.Request) -> web.Response:
        principal = require_admin(request)
        channel = provider_channel(request.match_info["channel"])
        removed = await self.context.channel_providers.find_one_and_delete(
            {"tenantId": principal.tenant_id, "channel": channel.value}, projection={"_id": 1}
        )
        if removed is None:
            raise NotFoundError("provider_not_found", f"no {channel.value} provider is configured", "channel")
        version = await self.context.next_version(KIND, principal.tenant_id, channel.value)
        log.info("channel_provider_deleted", channel=channel.value, version=version)
        await self.context.publish_deletion(KIND, principal.tenant_id, channel.value, version=version)
        return web.Response(status=204)
