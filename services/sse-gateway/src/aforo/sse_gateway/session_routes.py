"""`/v1/embed/session*`: the auth bridge. A bridge token plus an embed key become a session JWT.

The gateway hosts the exchange (not the API) because it sees the browser's `Origin`, which must be
one of the embed key's allowed domains. A bridge token is exchanged once: its `jti` is recorded in
`bridge_token_uses` until the token expires, and a second exchange gets 401
`bridge_token_replayed`. Each exchange writes an `embed_sessions` record; refreshes
extend it until `session_max_lifetime_seconds`, and revoking it (here by the SDK's `destroy`, or by
an admin through the API) ends its streams on every replica within one sweep.

    POST /v1/embed/session          {bridgeToken, embedKey} → {sessionToken, expiresAt, allowedOrigins}
    POST /v1/embed/session/refresh  Authorization: Bearer <session> → the same shape, new token
    POST /v1/embed/session/revoke   Authorization: Bearer <session> → 204
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Final

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from aforo.shared.embed import (
    BridgeTokenUseDocument,
    EmbedKeyDocument,
    EmbedSessionDocument,
    new_session_id,
    origin_allowed,
)
from aforo.shared.envelope import format_utc
from aforo.shared.http import json_response
from aforo.shared.logging import bind_event_context, get_logger
from aforo.shared.rate_limit import TokenBuckets, retry_after_header
from aforo.sse_gateway.boundary import (
    bearer_token,
    client_address,
    normalised_origin,
    origin_refusal,
    read_body,
)
from aforo.sse_gateway.context import GatewayContext
from aforo.sse_gateway.cors import cors_headers, preflight_headers
from aforo.sse_gateway.embed_tokens import (
    EmbedAuthError,
    SessionClaims,
    bridge_token_header,
    issue_session_token,
    verify_bridge_token,
    verify_session_token,
)
from aforo.sse_gateway.metrics import SESSION_EXCHANGES, SESSION_REFRESHES

log = get_logger(__name__)

SESSION_PATH: Final = "/v1/embed/session"
REFRESH_PATH: Final = "/v1/embed/session/refresh"
REVOKE_PATH: Final = "/v1/embed/session/revoke"
SESSION_PURGE_AFTER: Final = timedelta(days=1)

Token = Annotated[str, Field(min_length=1, max_length=4096)]


class ExchangeRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, populate_by_name=True)

    bridge_token: Token = Field(alias="bridgeToken")
    embed_key: str = Field(alias="embedKey", min_length=1, max_length=128)


def check_origin(origin: str | None, embed_key: EmbedKeyDocument) -> str:
    """The caller's origin when the embed key allows it; 403 otherwise (no CORS headers follow)."""
    if origin is None or not origin_allowed(origin, embed_key.allowed_domains):
        raise origin_refusal()
    return origin


def session_answer(token: str, expires_at: datetime, embed_key: EmbedKeyDocument) -> dict[str, object]:
    return {
        "sessionToken": token,
        "expiresAt": format_utc(expires_at),
        "allowedOrigins": list(embed_key.allowed_domains),
    }


def answer_with_cors(body: dict[str, object], origin: str, status: int = 200) -> web.Response:
    response = json_response(body, status=status)
    response.headers.update(cors_headers(origin, True))
    return response


class SessionRoutes:
    def __init__(self, context: GatewayContext, clock: Callable[[], float] = time.monotonic) -> None:
        self.context = context
        self.exchange_limits = TokenBuckets(
            context.settings.session_exchange_rate_per_second, context.settings.session_exchange_burst
        )
        self._monotonic = clock

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post(SESSION_PATH, self.exchange),
            web.post(REFRESH_PATH, self.refresh),
            web.post(REVOKE_PATH, self.revoke),
            *(web.options(path, self.preflight) for path in (SESSION_PATH, REFRESH_PATH, REVOKE_PATH)),
        ]

    async def preflight(self, request: web.Request) -> web.Response:
        """CORS preflight (no credentials yet): allowed when some active embed key lists the origin."""
        origin = normalised_origin(request)
        allowed = origin is not None and await self.context.store.origin_has_active_key(origin)
        if not allowed:
            raise origin_refusal()
        return web.Response(status=204, headers=preflight_headers(origin, True))

    async def _usable_embed_key(self, tenant_id: str, key_id: str, field: str) -> EmbedKeyDocument:
        embed_key = await self.context.store.embed_key(tenant_id, key_id)
        if embed_key is None:
            raise EmbedAuthError(403, "unknown_embed_key", "no such embed key for this tenant", field)
        if not embed_key.usable:
            raise EmbedAuthError(403, "embed_key_revoked", "the embed key has been revoked", field)
        return embed_key

    async def exchange(self, request: web.Request) -> web.Response:
        try:
            return await self._exchange(request)
        except EmbedAuthError as refusal:
            SESSION_EXCHANGES.labels(refusal.code).inc()
            raise

    async def _exchange(self, request: web.Request) -> web.Response:
        context = self.context
        # Before anything is read: the exchange is unauthenticated, and each try costs MongoDB reads.
        wait = self.exchange_limits.take(
            client_address(request, context.settings.client_address_header), self._monotonic()
        )
        if wait is not None:
            raise EmbedAuthError(
                429,
                "rate_limited",
                "too many session exchanges from this address; retry after Retry-After seconds",
                retry_after=retry_after_header(wait),
            )
        body = await read_body(request, ExchangeRequest)
        header = bridge_token_header(body.bridge_token)
        signing_key = await context.store.signing_key(header.claimed_tenant_id, header.kid)
        now = context.clock()
        claims = verify_bridge_token(
            body.bridge_token, signing_key, now=now, leeway_seconds=context.settings.token_leeway_seconds
        )
        embed_key = await self._usable_embed_key(claims.tenant_id, body.embed_key, "embedKey")
        origin = check_origin(normalised_origin(request), embed_key)
        # Last, so a refused attempt (another origin, a revoked embed key) does not use the token up.
        first_use = await context.store.record_bridge_token_use(
            BridgeTokenUseDocument(
                tenant_id=claims.tenant_id,
                jti=claims.jti,
                kid=claims.kid,
                used_at=now,
                expires_at=claims.expires_at,
            )
        )
        if not first_use:
            raise EmbedAuthError(
                401,
                "bridge_token_replayed",
                "this bridge token has already been exchanged; sign a new one (a new jti) per exchange",
                "jti",
            )
        session_id = new_session_id()
        token, expires_at = issue_session_token(
            tenant_id=claims.tenant_id,
            customer_id=claims.customer_id,
            session_id=session_id,
            embed_key_id=embed_key.key_id,
            secret=context.signing_secret,
            now=now,
            ttl=context.session_ttl,
        )
        ends_at = now + context.session_max_lifetime
        await context.store.create_session(
            EmbedSessionDocument(
                tenant_id=claims.tenant_id,
                session_id=session_id,
                customer_id=claims.customer_id,
                embed_key_id=embed_key.key_id,
                signing_key_id=claims.kid,
                origin=origin,
                created_at=now,
                expires_at=expires_at,
                ends_at=ends_at,
                purge_at=ends_at + SESSION_PURGE_AFTER,
            )
        )
        SESSION_EXCHANGES.labels("issued").inc()
        with bind_event_context(tenant_id=claims.tenant_id):
            log.info(
                "embed_session_issued", session_id=session_id, embed_key_id=embed_key.key_id, kid=claims.kid
            )
        return answer_with_cors(session_answer(token, expires_at, embed_key), origin, status=201)

    async def _live_session(self, request: web.Request) -> tuple[SessionClaims, EmbedKeyDocument, str]:
        """A verified, unrevoked, unended session used from an origin its embed key allows."""
        context = self.context
        claims = verify_session_token(
            bearer_token(request),
            context.session_secrets,
            now=context.clock(),
            leeway_seconds=context.settings.token_leeway_seconds,
        )
        session = await context.store.session(claims.tenant_id, claims.session_id)
        if session is None or session.revoked:
            raise EmbedAuthError(
                401, "session_revoked", "the session has been revoked; exchange a new bridge token"
            )
        if session.ends_at <= context.clock():
            raise EmbedAuthError(
                401, "session_ended", "the session reached its lifetime; exchange a new bridge token"
            )
        embed_key = await context.store.embed_key(claims.tenant_id, claims.embed_key_id)
        if embed_key is None or not embed_key.usable:
            raise EmbedAuthError(401, "embed_key_revoked", "the session's embed key has been revoked")
        origin = check_origin(normalised_origin(request), embed_key)
        return claims, embed_key, origin

    async def refresh(self, request: web.Request) -> web.Response:
        try:
            claims, embed_key, origin = await self._live_session(request)
        except EmbedAuthError as refusal:
            SESSION_REFRESHES.labels(refusal.code).inc()
            raise
        context = self.context
        token, expires_at = issue_session_token(
            tenant_id=claims.tenant_id,
            customer_id=claims.customer_id,
            session_id=claims.session_id,
            embed_key_id=claims.embed_key_id,
            secret=context.signing_secret,
            now=context.clock(),
            ttl=context.session_ttl,
        )
        if not await context.store.extend_session(claims.tenant_id, claims.session_id, expires_at):
            SESSION_REFRESHES.labels("session_revoked").inc()
            raise EmbedAuthError(
                401, "session_revoked", "the session has been revoked; exchange a new bridge token"
            )
        SESSION_REFRESHES.labels("issued").inc()
        return answer_with_cors(session_answer(token, expires_at, embed_key), origin)

    async def revoke(self, request: web.Request) -> web.Response:
        """The SDK's `destroy`: this session ends now, on every replica within one sweep."""
        claims, _, origin = await self._live_session(request)
        await self.context.store.revoke_session(claims.tenant_id, claims.session_id, self.context.clock())
        with bind_event_context(tenant_id=claims.tenant_id):
            log.info("embed_session_revoked", session_id=claims.session_id, by="client")
        return web.Response(status=204, headers=cors_headers(origin, True))
