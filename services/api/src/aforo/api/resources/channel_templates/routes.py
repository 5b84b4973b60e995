"""`/api/v1/admin/templates/{eventType}/{channel}`: a tenant's template override, checked when saved.

    PUT  ...  save the override {subject?, text?, html?} → 200 with a sample preview (422 naming the
              template field and the undefined name or syntax error)
    GET  ...  the override, or the built-in template (`builtIn: true`), with a sample preview

The event type must be a SYSTEM one or one of the tenant's CUSTOM definitions (else 404); the
channel EMAIL, SMS or PAGERDUTY (else 404).
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from aforo.api import changes
from aforo.api.auth import require_admin
from aforo.api.boundary import read_body
from aforo.api.operations import BODY_ERRORS, Answer, Resource, operation
from aforo.api.problems import NotFoundError
from aforo.api.resources.channel_providers.rules import provider_channel
from aforo.api.resources.channel_templates.rules import (
    TemplateOverrideBody,
    TemplateView,
    checked_preview,
    override_parts,
    template_document,
    template_view,
)
from aforo.shared.catalog import SYSTEM_EVENTS
from aforo.shared.config_changes import ConfigKind
from aforo.shared.delivery import Channel
from aforo.shared.http import json_response
from aforo.shared.logging import get_logger
from aforo.shared.templates import TemplateParts

log = get_logger(__name__)

ITEM_PATH: Final = "/api/v1/admin/templates/{eventType}/{channel}"
KIND: Final = ConfigKind.CHANNEL_TEMPLATE


def template_id(event_type: str, channel: Channel) -> str:
    """A template's id in config changes: `<eventType>:<channel>`."""
    return f"{event_type}:{channel.value}"


class ChannelTemplateRoutes(Resource):
    async def _display_name(self, tenant_id: str, event_type: str) -> str | None:
        """The definition's display name; 404 unless the type is SYSTEM or the tenant's CUSTOM one."""
        if event_type in SYSTEM_EVENTS:
            return None
        definition = await self.context.definitions.find_one(
            {"tenantId": tenant_id, "eventType": event_type}, {"_id": 0, "displayName": 1}
        )
        if definition is None:
            raise NotFoundError("event_type_not_found", "no such event type for this tenant", "eventType")
        name = definition.get("displayName")
        return str(name) if name else None

    @operation(
        "put",
        ITEM_PATH,
        "putChannelTemplate",
        "Override the template of one event type on one channel; rendered against a sample event first.",
        answers={
            200: Answer("Saved, with the sample rendering.", TemplateView),
            404: Answer("No such event type for this tenant, or not a templated channel."),
            **BODY_ERRORS,
        },
        body=TemplateOverrideBody,
    )
    async def put(self, request: web.Request) -> web.Response:
        principal = require_admin(request)
        event_type = request.match_info["eventType"]
        channel = provider_channel(request.match_info["channel"])
        display_name = await self._display_name(principal.tenant_id, event_type)
        body = await read_body(request, TemplateOverrideBody, self.context.body_limit)
        parts = override_parts(body)
        preview = checked_preview(event_type, channel, parts, display_name)
        key = {"tenantId": principal.tenant_id, "eventType": event_type, "channel": channel.value}
        current = await self.context.channel_templates.find_one(key, {"_id": 0})
        document_id = template_id(event_type, channel)
        version = await self.context.next_version(KIND, principal.tenant_id, document_id)
        now = self.context.clock()
        document = template_document(
            principal.tenant_id, event_type, channel, parts, current=current, version=version, now=now
        )
        await self.context.channel_templates.replace_one(key, document, upsert=True)
        log.info("channel_template_saved", event_type=event_type, channel=channel.value, version=version)
        await self.context.publisher.config_change(changes.upserted(KIND, document_id, document, now=now))
        return json_response(template_view(event_type, channel, document, preview).to_wire())

    @operation(
        "get",
        ITEM_PATH,
        "getChannelTemplate",
        "The tenant's override of one event type on one channel, or the built-in template.",
        answers={
            200: Answer("The template and its sample rendering.", TemplateView),
            404: Answer("No such event type for this tenant, or not a templated channel."),
        },
    )
    async def get(self, request: web.Request) -> web.Response:
        principal = require_admin(request)
        event_type = request.match_info["eventType"]
        channel = provider_channel(request.match_info["channel"])
        display_name = await self._display_name(principal.tenant_id, event_type)
        document = await self.context.channel_templates.find_one(
            {"tenantId": principal.tenant_id, "eventType": event_type, "channel": channel.value}, {"_id": 0}
        )
        parts = (
            TemplateParts()
            if document is None
            else TemplateParts(
                subject=document.get("subject"), text=document.get("text"), html=document.get("html")
            )
        )
        preview = checked_preview(event_type, channel, parts, display_name)
        return json_response(template_view(event_type, channel, document, preview).to_wire())
