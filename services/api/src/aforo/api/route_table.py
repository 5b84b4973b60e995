"""Every resource the API serves, in the order its routes are registered and documented.

`ApiService` registers these classes' routes and `aforo.api.openapi` documents the same classes'
operations, so the router and `/openapi.json` cannot drift apart.
"""

from __future__ import annotations

from typing import Final

from aforo.api.operations import Operation, Resource
from aforo.api.resources.channel_providers.routes import ChannelProviderRoutes
from aforo.api.resources.channel_templates.routes import ChannelTemplateRoutes
from aforo.api.resources.contact_destinations.routes import ContactDestinationRoutes
from aforo.api.resources.custom_events.routes import EmitRoutes
from aforo.api.resources.delivery_logs.routes import DeliveryLogRoutes
from aforo.api.resources.embed_keys.routes import EmbedKeyRoutes
from aforo.api.resources.event_definitions.routes import EventDefinitionRoutes
from aforo.api.resources.notification_preferences.routes import PreferenceRoutes
from aforo.api.resources.webhook_endpoints.routes import WebhookEndpointRoutes

API_RESOURCES: Final[tuple[type[Resource], ...]] = (
    EventDefinitionRoutes,
    EmitRoutes,
    WebhookEndpointRoutes,
    PreferenceRoutes,
    DeliveryLogRoutes,
    EmbedKeyRoutes,
    ChannelProviderRoutes,
    ContactDestinationRoutes,
    ChannelTemplateRoutes,
)


def api_operations() -> tuple[Operation, ...]:
    """Every operation the API serves, as its handlers declare them."""
    return tuple(declared for resource in API_RESOURCES for declared in resource.operations)
