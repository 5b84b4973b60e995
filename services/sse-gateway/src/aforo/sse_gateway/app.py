"""The SSE gateway process: widget events to browser streams, and the embed auth bridge.

Start: create the widget topic if missing, connect MongoDB (embed collections' indexes), rebuild the
resume history from the widget topic, then take streams (until then /readyz and new streams say 503).
A sweep every `session_sweep_seconds` ends streams whose session or embed key was revoked, or whose
session reached its lifetime. Drain (SIGTERM): refuse new streams and close the open ones (aborting,
after a short wait, those stuck writing to a stalled client), so their clients reconnect to another
replica and resume with Last-Event-ID. Stop: the consumer, MongoDB.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from datetime import datetime, timedelta

from aiohttp import web
from aiohttp.typedefs import Middleware
from pymongo.errors import PyMongoError

from aforo.shared.background import BackgroundTasks
from aforo.shared.collections import BRIDGE_SIGNING_KEYS, BRIDGE_TOKEN_USES, EMBED_KEYS, EMBED_SESSIONS
from aforo.shared.kafka import TopicNames, ensure_topics, topic_specs
from aforo.shared.lifecycle import Service
from aforo.shared.logging import get_logger
from aforo.shared.mongo import MongoStore
from aforo.shared.secret_box import secret_box_from
from aforo.shared.settings import ConfigurationError
from aforo.sse_gateway.boundary import MAX_BODY_BYTES, error_middleware
from aforo.sse_gateway.connections import CloseReason, ConnectionRegistry, heartbeat_shards
from aforo.sse_gateway.context import GatewayContext
from aforo.sse_gateway.descriptor_budget import apply_descriptor_budget
from aforo.sse_gateway.embed_store import EmbedStore
from aforo.sse_gateway.embed_tokens import session_secrets
from aforo.sse_gateway.fanout import WidgetFeed
from aforo.sse_gateway.history import HistoryStore
from aforo.sse_gateway.revocation import streams_to_close
from aforo.sse_gateway.session_routes import SessionRoutes
from aforo.sse_gateway.settings import SseGatewaySettings
from aforo.sse_gateway.stream_routes import StreamRoutes

log = get_logger(__name__)

GATEWAY_COLLECTIONS = (EMBED_KEYS, BRIDGE_SIGNING_KEYS, EMBED_SESSIONS, BRIDGE_TOKEN_USES)
# Revocations are looked up from a little before the previous sweep: the API's clock stamps
# `revokedAt`, this replica's clock decides "since", and the two may disagree by this much.
CLOCK_SKEW_MARGIN = timedelta(seconds=60)
# How long drain lets closed streams' handlers return before it aborts the transports still open.
DRAIN_CLOSE_WAIT_SECONDS = 2.0
LISTEN_BACKLOG = 4096


class SseGatewayConfigError(ConfigurationError):
    """The gateway's settings cannot work; the message names the setting, never its value."""


class SseGatewayService(Service):
    name = "sse_gateway"

    def __init__(self, settings: SseGatewaySettings) -> None:
        secret = settings.session_secret.get_secret_value() if settings.session_secret else None
        try:
            secrets = session_secrets(secret)
        except ValueError as error:
            raise SseGatewayConfigError(str(error)) from None
        secret_box = secret_box_from(
            settings.secrets_encryption_keys,
            "the auth-bridge signing keys are stored encrypted with it (the API's keys)",
        )
        budget = apply_descriptor_budget(settings.max_connections)
        if budget.lowered:
            log.warning(
                "max_connections_lowered_to_fit_descriptors",
                configured=settings.max_connections,
                effective=budget.max_connections,
                nofile_limit=budget.soft_limit,
            )
            settings = settings.model_copy(update={"max_connections": budget.max_connections})
        self.settings = settings
        self.topics = TopicNames(settings.topic_prefix)
        self.mongo = MongoStore(settings.mongo_uri, settings.mongo_database, app_name=f"aforo-{self.name}")
        self.registry = ConnectionRegistry(heartbeat_shards(settings.heartbeat_seconds))
        self.history = HistoryStore(
            per_stream=settings.history_per_stream,
            max_events=settings.history_max_events,
            window_ms=int(settings.history_window_seconds * 1000),
        )
        self.feed = WidgetFeed(settings, self.topics.widget_events, self.registry, self.history)
        self.context = GatewayContext(
            settings=settings,
            store=EmbedStore(self.mongo, secret_box, cache_seconds=settings.embed_key_cache_seconds),
            registry=self.registry,
            history=self.history,
            session_secrets=secrets,
            is_loaded=self.feed.loaded.is_set,
        )
        self._loops = BackgroundTasks("sse-gateway")

    async def start(self) -> None:
        await ensure_topics(
            self.settings.kafka_bootstrap_servers,
            topic_specs([self.topics.widget_events], self.settings),
            client_id=self.settings.service_name,
        )
        await self.mongo.start(GATEWAY_COLLECTIONS)
        await self.feed.start()
        self._loops.spawn("session-sweep", self._sweep_forever())
        self._loops.spawn("heartbeat", self._heartbeat_forever())

    async def readiness_checks(self) -> dict[str, bool]:
        timeout = self.settings.readiness_timeout_seconds
        kafka_ok, mongo_ok = await asyncio.gather(self.feed.answers(timeout), self.mongo.answers(timeout))
        return {"kafka": kafka_ok, "mongodb": mongo_ok, "history": self.feed.loaded.is_set()}

    def is_alive(self) -> bool:
        return self.feed.is_alive() and self._loops.alive()

    def max_request_body_bytes(self) -> int:
        return MAX_BODY_BYTES

    def listen_backlog(self) -> int:
        """A reconnect storm (another replica drained, a deploy) must queue, not wait out SYN retries."""
        return LISTEN_BACKLOG

    def cancels_handlers_on_disconnect(self) -> bool:
        """A closed browser tab ends its stream handler at once, freeing its slot under the caps."""
        return True

    def middlewares(self) -> Sequence[Middleware]:
        return (error_middleware(self.context.store),)

    def add_routes(self, app: web.Application) -> None:
        for routes in (SessionRoutes(self.context), StreamRoutes(self.context)):
            app.add_routes(routes.routes())

    async def _heartbeat_forever(self) -> None:
        """Each shard of streams once per heartbeat interval, the shards spread over it."""
        shards = self.registry.heartbeat_shards
        for shard in itertools.cycle(range(shards)):
            await asyncio.sleep(self.settings.heartbeat_seconds / shards)
            self.registry.tick(shard)

    async def _sweep_forever(self) -> None:
        since = self.context.clock() - CLOCK_SKEW_MARGIN
        while True:
            await asyncio.sleep(self.settings.session_sweep_seconds)
            began = self.context.clock()
            try:
                await self.sweep(since)
            except PyMongoError as error:
                log.warning("sse_session_sweep_failed", error=repr(error))
                continue
            since = began - CLOCK_SKEW_MARGIN

    async def sweep(self, since: datetime) -> int:
        """End the streams whose grant no longer holds; returns how many."""
        revocations = await self.context.store.revoked_since(since)
        connections = list(self.registry)
        verdicts = dict(
            streams_to_close(
                (connection.grant for connection in connections),
                revoked_sessions=revocations.sessions,
                revoked_embed_keys=revocations.embed_keys,
                now=self.context.clock(),
            )
        )
        closed = 0
        for connection in connections:
            reason = verdicts.get(connection.grant)
            if reason is not None and connection.closed is None:
                connection.close(reason)
                closed += 1
        if closed:
            log.info("sse_streams_ended_by_sweep", streams=closed)
        return closed

    async def drain(self) -> None:
        """New streams get 503; open ones close so their clients reconnect to another replica.

        A handler stuck in a write to a client that stopped reading never sees its stream close:
        after a short wait the remaining streams' transports are aborted, so drain ends well within
        the grace period however the clients behave.
        """
        self.context.draining = True
        closing = self.registry.close_all(CloseReason.DRAINING)
        log.info("sse_draining", streams=closing)
        wait = min(DRAIN_CLOSE_WAIT_SECONDS, self.settings.shutdown_grace_seconds / 4)
        try:
            await asyncio.wait_for(self.registry.wait_empty(), wait)
        except TimeoutError:
            aborted = self.registry.abort_all()
            log.warning("sse_drain_aborted_streams", streams=aborted, after_seconds=wait)
            await self.registry.wait_empty()

    async def stop(self) -> None:
        await self._loops.cancel_all()  # cancelled and awaited: nothing runs on a closed client
        await self.feed.stop()
        await self.mongo.close()
