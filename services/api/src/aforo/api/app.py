"""The API process: its connections, middlewares and routes, under the common lifecycle.

Start: create the topics it writes (idempotent), connect MongoDB (creating its collections' indexes)
and the producer, then accept requests; until then API routes answer 503. Drain: refuse new requests
(503) and wait for the ones in flight, whose broker acks are part of their answer. Stop: close the
JWKS client, the producer and MongoDB. Configuration that cannot work (auth, encryption keys) stops
the process before it starts, with an error naming the setting.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web
from aiohttp.typedefs import Middleware

from aforo.api.auth import DEFAULT_PUBLIC_PATHS, AuthConfig, AuthConfigError, JwtVerifier, auth_middleware
from aforo.api.boundary import problem_middleware
from aforo.api.context import ApiContext
from aforo.api.openapi import OPENAPI_PATH, openapi_document
from aforo.api.publishing import Publisher
from aforo.api.request_gate import RequestGate
from aforo.api.route_table import API_RESOURCES
from aforo.api.settings import ApiSettings
from aforo.api.tenant_rate_limit import tenant_rate_limit_middleware
from aforo.shared.collections import (
    BRIDGE_SIGNING_KEYS,
    CHANNEL_PROVIDERS,
    CHANNEL_TEMPLATES,
    CONFIG_VERSIONS,
    CONTACT_DESTINATIONS,
    DELIVERY_LOG_PAGES,
    DELIVERY_LOGS,
    EMBED_KEYS,
    EMBED_SESSIONS,
    EVENT_DEFINITIONS,
    NOTIFICATION_PREFERENCES,
    WEBHOOK_ENDPOINTS,
)
from aforo.shared.config_changes import CONFIG_TOPIC_SETTINGS
from aforo.shared.connected_service import ConnectedService
from aforo.shared.http import json_response
from aforo.shared.kafka import ensure_topics, topic_specs
from aforo.shared.logging import get_logger
from aforo.shared.rate_limit import TokenBuckets
from aforo.shared.secret_box import secret_box_from
from aforo.shared.settings import ConfigurationError

log = get_logger(__name__)

API_COLLECTIONS = (
    EVENT_DEFINITIONS,
    WEBHOOK_ENDPOINTS,
    NOTIFICATION_PREFERENCES,
    DELIVERY_LOG_PAGES,
    DELIVERY_LOGS,
    CONFIG_VERSIONS,
    EMBED_KEYS,
    BRIDGE_SIGNING_KEYS,
    EMBED_SESSIONS,
    CHANNEL_PROVIDERS,
    CONTACT_DESTINATIONS,
    CHANNEL_TEMPLATES,
)


class ApiConfigError(ConfigurationError):
    """The API's settings cannot work; the message names the setting, never its value."""


class ApiService(ConnectedService):
    name = "api"

    def __init__(self, settings: ApiSettings) -> None:
        # Settings first: a process that cannot work should not have opened a client.
        try:
            auth_config = AuthConfig.from_settings(settings)
        except AuthConfigError as error:
            raise ApiConfigError(str(error)) from None
        secret_box = secret_box_from(
            settings.secrets_encryption_keys, "webhook secrets are stored encrypted with it"
        )
        super().__init__(settings, API_COLLECTIONS)
        self.api_settings = settings
        self.verifier = JwtVerifier(auth_config)
        self.publisher = Publisher(lambda: self.producer, self.topics, settings.publish_timeout_seconds)
        self.context = ApiContext(settings, self.mongo, self.publisher, secret_box)
        self.gate = RequestGate(DEFAULT_PUBLIC_PATHS)
        self.rate_limits = TokenBuckets(settings.rate_limit_per_second, settings.rate_limit_burst)

    async def start(self) -> None:
        await ensure_topics(
            self.settings.kafka_bootstrap_servers,
            topic_specs([self.topics.custom_events, self.topics.dispatch_requests], self.settings)
            + topic_specs([self.topics.config_changes], self.settings, **CONFIG_TOPIC_SETTINGS),
            client_id=self.settings.service_name,
        )
        await super().start()
        self.gate.open()

    def max_request_body_bytes(self) -> int:
        return self.api_settings.max_request_body_bytes

    def middlewares(self) -> Sequence[Middleware]:
        """Errors outermost (everything leaves as JSON), then the start/drain gate, then auth, then
        the tenant's rate limit (it needs the tenant auth found)."""
        return (
            problem_middleware,
            self.gate.middleware(),
            auth_middleware(self.verifier),
            tenant_rate_limit_middleware(self.rate_limits),
        )

    def add_routes(self, app: web.Application) -> None:
        """Each resource's routes as its handlers declare them; `/openapi.json` documents the same."""
        for resource in API_RESOURCES:
            app.add_routes(resource(self.context).routes())
        app.router.add_get(OPENAPI_PATH, self._openapi)

    async def _openapi(self, _: web.Request) -> web.Response:
        return json_response(openapi_document())

    async def drain(self) -> None:
        """No new requests; the runner's grace period bounds the wait for those in flight."""
        await self.gate.close_and_wait()
        log.info("api_drained")

    async def stop(self) -> None:
        await self.verifier.close()
        await super().stop()
