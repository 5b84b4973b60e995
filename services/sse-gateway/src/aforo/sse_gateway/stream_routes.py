"""`GET /v1/embed/stream`: one customer's live widget events as Server-Sent Events; and the SDK script.

A stream is authorised by a session JWT (`Authorization: Bearer`, or `?access_token=` because
EventSource cannot set headers), only from an `Origin` its embed key allows (else 403, without CORS
headers). The session decides the stream: `?tenantId=&customerId=`, when given, must name the same
(tenant, customer) or the request is refused (403), so a page asking for one customer with another's
session fails loudly. `Last-Event-ID` (header, or `?lastEventId=` for the SDK's own reconnects)
replays what the client missed from this replica's history, then live events follow.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Final

from aiohttp import web

from aforo.shared.embed import origin_allowed
from aforo.shared.logging import get_logger
from aforo.sse_gateway.admission import REFUSAL_STATUS, Capacity, admit
from aforo.sse_gateway.boundary import bearer_token, normalised_origin, origin_refusal, query_value
from aforo.sse_gateway.connections import CloseReason, Connection, StreamGrant
from aforo.sse_gateway.context import GatewayContext
from aforo.sse_gateway.cors import cors_headers, preflight_headers
from aforo.sse_gateway.embed_tokens import EmbedAuthError, verify_session_token
from aforo.sse_gateway.metrics import CONNECTIONS_OPENED, CONNECTIONS_REFUSED, EVENTS_REPLAYED, RESUME_MISSES

log = get_logger(__name__)

STREAM_PATH: Final = "/v1/embed/stream"
SDK_PATH: Final = "/sdk/aforo-embed.js"
TOKEN_QUERY: Final = "access_token"  # noqa: S105 - the parameter's name (RFC 6750)
LAST_EVENT_ID_QUERY: Final = "lastEventId"
RECONNECT_HINT_MS: Final = 2000
MAX_LAST_EVENT_ID_LENGTH: Final = 512
STREAM_HEADERS: Final = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-store, no-transform",  # authenticated: never kept by a cache
    "X-Accel-Buffering": "no",  # nginx and friends: do not buffer a stream
}


class _StreamResponse(web.StreamResponse):
    """A stream whose headers leave with its first bytes (the `retry:` hint), in one write.

    aiohttp's StreamResponse sends its headers on `prepare` by itself; with thousands of browsers
    connecting at once, the second send per stream (and the client wake-up it costs) is measurable.
    `_send_headers_immediately` is aiohttp's own switch for this (its `Response` turns it off too).
    """

    _send_headers_immediately = False


def _nothing() -> None:
    """What aborting a stream whose client left before it opened does."""


def _always() -> bool:
    return True


def sdk_script() -> bytes:
    return files("aforo.sse_gateway").joinpath("static", "aforo-embed.js").read_bytes()


class StreamRoutes:
    def __init__(self, context: GatewayContext) -> None:
        self.context = context
        self.capacity = Capacity(
            context.settings.max_connections, context.settings.max_connections_per_stream
        )
        self._sdk = sdk_script()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get(STREAM_PATH, self.stream, allow_head=False),
            web.options(STREAM_PATH, self.preflight),
            web.get(SDK_PATH, self.sdk),
        ]

    async def sdk(self, _: web.Request) -> web.Response:
        return web.Response(
            body=self._sdk,
            content_type="text/javascript",
            charset="utf-8",
            headers={"Cache-Control": "public, max-age=300"},
        )

    async def preflight(self, request: web.Request) -> web.Response:
        """For clients that read the stream with fetch() and an Authorization header."""
        origin = normalised_origin(request)
        if origin is None or not await self.context.store.origin_has_active_key(origin):
            raise origin_refusal()
        return web.Response(status=204, headers=preflight_headers(origin, True))

    async def _authorise(self, request: web.Request) -> tuple[StreamGrant, str]:
        """The grant and the allowed origin, or the refusal (401, 403) as an EmbedAuthError."""
        context = self.context
        now = context.clock()
        claims = verify_session_token(
            bearer_token(request, TOKEN_QUERY),
            context.session_secrets,
            now=now,
            leeway_seconds=context.settings.token_leeway_seconds,
        )
        for parameter, granted in (("tenantId", claims.tenant_id), ("customerId", claims.customer_id)):
            asked = query_value(request, parameter)
            if asked is not None and asked != granted:
                raise EmbedAuthError(
                    403, "stream_forbidden", "the session is not valid for this stream", parameter
                )
        embed_key = await context.store.embed_key(claims.tenant_id, claims.embed_key_id)
        if embed_key is None or not embed_key.usable:
            raise EmbedAuthError(401, "embed_key_revoked", "the session's embed key has been revoked")
        origin = normalised_origin(request)
        if origin is None or not origin_allowed(origin, embed_key.allowed_domains):
            raise origin_refusal()
        session = await context.store.session(claims.tenant_id, claims.session_id)
        if session is None or session.revoked:
            raise EmbedAuthError(
                401, "session_revoked", "the session has been revoked; exchange a new bridge token"
            )
        if session.ends_at <= now:
            raise EmbedAuthError(
                401, "session_ended", "the session reached its lifetime; exchange a new bridge token"
            )
        grant = StreamGrant(
            tenant_id=claims.tenant_id,
            customer_id=claims.customer_id,
            session_id=claims.session_id,
            embed_key_id=claims.embed_key_id,
            session_ends_at=session.ends_at,
        )
        return grant, origin

    async def stream(self, request: web.Request) -> web.StreamResponse:
        try:
            grant, origin = await self._authorise(request)
        except EmbedAuthError as refusal:
            CONNECTIONS_REFUSED.labels(refusal.code).inc()
            raise
        context = self.context
        refused = admit(
            self.capacity,
            open_total=len(context.registry),
            open_for_stream=context.registry.count_for(grant.key),
            draining=context.draining,
            ready=context.is_loaded(),
        )
        if refused is not None:
            CONNECTIONS_REFUSED.labels(refused.value).inc()
            raise EmbedAuthError(
                REFUSAL_STATUS[refused], refused.value, "the gateway cannot take this stream now; retry"
            )
        last_event_id = (
            request.headers.get("Last-Event-ID") or query_value(request, LAST_EVENT_ID_QUERY) or None
        )
        if last_event_id is not None and len(last_event_id) > MAX_LAST_EVENT_ID_LENGTH:
            last_event_id = None

        # The transport's own bound methods, not two closures per stream (tens of thousands of them).
        transport = request.transport
        connection = Connection(
            grant,
            queue_frames=context.settings.connection_queue_frames,
            queue_bytes=context.settings.connection_queue_bytes,
            abort=transport.abort if transport is not None else _nothing,
            gone=transport.is_closing if transport is not None else _always,
        )
        # Replay and registration in one step (no await between): no event falls between the two.
        resume = context.history.resume(grant.key, last_event_id, int(context.clock().timestamp() * 1000))
        context.registry.add(connection)
        try:
            return await self._serve(request, connection, origin, resume.frames, resume.found)
        finally:
            connection.close(CloseReason.CLIENT_GONE)
            context.registry.remove(connection)

    async def _serve(
        self,
        request: web.Request,
        connection: Connection,
        origin: str,
        replay: list[bytes],
        resume_found: bool,
    ) -> web.StreamResponse:
        response = _StreamResponse(status=200, headers={**STREAM_HEADERS, **cors_headers(origin, True)})
        CONNECTIONS_OPENED.inc()
        if replay:
            EVENTS_REPLAYED.inc(len(replay))
        if not resume_found:
            RESUME_MISSES.inc()
        log.debug(
            "sse_stream_opened",
            tenant_id=connection.grant.tenant_id,
            session_id=connection.grant.session_id,
            replayed=len(replay),
        )
        try:
            await response.prepare(request)
            await response.write(f"retry: {RECONNECT_HINT_MS}\n\n".encode() + b"".join(replay))
            while chunk := await connection.take():
                await response.write(chunk)
        except ConnectionError:
            pass  # the client went away, or a slow consumer's transport was aborted: nothing to answer
        return response
