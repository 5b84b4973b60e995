"""Admin routes for browser embeds: embed keys, auth-bridge signing keys, and revoking embed sessions.

    POST   /api/v1/admin/embed-keys                          mint {allowedDomains} → 201
    GET    /api/v1/admin/embed-keys                          list
    PATCH  /api/v1/admin/embed-keys/{keyId}                  replace allowedDomains
    DELETE /api/v1/admin/embed-keys/{keyId}                  revoke → 204 (idempotent)
    POST   /api/v1/admin/bridge-signing-keys                 mint a NEXT key → 201, its secret shown once
    GET    /api/v1/admin/bridge-signing-keys                 list (effective status, never secrets)
    POST   /api/v1/admin/bridge-signing-keys/{kid}/promote   NEXT → ACTIVE; the previous ACTIVE retires
                                                             after the overlap
    DELETE /api/v1/admin/bridge-signing-keys/{kid}           revoke → 204 (idempotent); the embed
                                                             sessions it minted end too
    POST   /api/v1/admin/embed-sessions/revoke               {customerId}: end that customer's sessions

Roles OWNER, ADMIN or BILLING_ADMIN; everything is filtered by the caller's tenant, so another
tenant's key is a 404. The SSE gateway reads these documents (shapes in `aforo.shared.embed`) and
ends streams of revoked keys and sessions within its sweep interval. Signing secrets are encrypted
with the SecretBox before they are stored; the mint response is the only place one ever appears.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final

from aiohttp import web
from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

from aforo.api.auth import require_admin
from aforo.api.boundary import read_body
from aforo.api.context import ApiContext
from aforo.api.operations import BODY_ERRORS, Answer, Resource, operation
from aforo.api.problems import ConflictError, NotFoundError
from aforo.api.resources.embed_keys.rules import (
    EmbedKeyCreate,
    EmbedKeyList,
    EmbedKeyUpdate,
    EmbedKeyView,
    EmbedSessionRevocation,
    MintedSigningKey,
    SessionsRevoked,
    SigningKeyList,
    SigningKeyView,
    embed_key_view,
    new_embed_key,
    new_signing_key,
    promotion_refusal,
    retirement,
    signing_key_view,
    superseded_signing_keys,
)
from aforo.shared.collections import BRIDGE_SIGNING_KEYS, EMBED_KEYS, EMBED_SESSIONS
from aforo.shared.embed import (
    EmbedKeyStatus,
    SigningKeyStatus,
    new_embed_key_id,
    new_signing_key_id,
    new_signing_secret,
)
from aforo.shared.http import json_response
from aforo.shared.logging import get_logger
from aforo.shared.mongo import Document

log = get_logger(__name__)

EMBED_KEYS_PATH: Final = "/api/v1/admin/embed-keys"
EMBED_KEY_PATH: Final = "/api/v1/admin/embed-keys/{keyId}"
SIGNING_KEYS_PATH: Final = "/api/v1/admin/bridge-signing-keys"
SIGNING_KEY_PATH: Final = "/api/v1/admin/bridge-signing-keys/{kid}"
PROMOTE_PATH: Final = "/api/v1/admin/bridge-signing-keys/{kid}/promote"
REVOKE_SESSIONS_PATH: Final = "/api/v1/admin/embed-sessions/revoke"
LIST_LIMIT: Final = 1000
NO_ID: Final = {"_id": 0}
EMBED_KEY_NOT_FOUND: Final = {404: Answer("No such embed key for this tenant.")}
SIGNING_KEY_NOT_FOUND: Final = {404: Answer("No such bridge signing key for this tenant.")}


def embed_key_not_found(key_id: str) -> NotFoundError:
    return NotFoundError("embed_key_not_found", "no such embed key for this tenant", "keyId")


def signing_key_not_found(kid: str) -> NotFoundError:
    return NotFoundError("signing_key_not_found", "no such bridge signing key for this tenant", "kid")


class EmbedKeyRoutes(Resource):
    """`overlap`: how long a superseded ACTIVE signing key keeps verifying after a promote; by default
    the API's `secret_rotation_overlap_seconds` (the webhook secrets' overlap)."""

    def __init__(self, context: ApiContext, overlap: timedelta | None = None) -> None:
        self.context = context
        self.overlap = (
            overlap
            if overlap is not None
            else timedelta(seconds=context.settings.secret_rotation_overlap_seconds)
        )

    @property
    def _embed_keys(self) -> AsyncCollection[Document]:
        return self.context.mongo.collection(EMBED_KEYS.collection)

    @property
    def _signing_keys(self) -> AsyncCollection[Document]:
        return self.context.mongo.collection(BRIDGE_SIGNING_KEYS.collection)

    @property
    def _sessions(self) -> AsyncCollection[Document]:
        return self.context.mongo.collection(EMBED_SESSIONS.collection)

    # ---------------------------------------------------------------- embed keys

    @operation(
        "post",
        EMBED_KEYS_PATH,
        "createEmbedKey",
        "Mint a public embed key for the origins (exact `https://host[:port]`) allowed to embed widgets.",
        answers={
            201: Answer("Minted.", EmbedKeyView, {"Location": "The key's path."}),
            **BODY_ERRORS,
        },
        body=EmbedKeyCreate,
    )
    async def create_embed_key(self, request: web.Request) -> web.Response:
        principal = require_admin(request)
        body = await read_body(request, EmbedKeyCreate, self.context.body_limit)
        key = new_embed_key(principal.tenant_id, body, key_id=new_embed_key_id(), now=self.context.clock())
        await self._embed_keys.insert_one(key.to_document())
        log.info("embed_key_created", key_id=key.key_id, allowed_domains=len(key.allowed_domains))
        response = json_response(embed_key_view(key.to_document()).to_wire(), status=201)
        response.headers["Location"] = EMBED_KEY_PATH.format(keyId=key.key_id)
        return response

    @operation(
        "get",
        EMBED_KEYS_PATH,
        "listEmbedKeys",
        "The tenant's embed keys, revoked ones included, oldest first.",
        answers={200: Answer("The keys.", EmbedKeyList)},
    )
    async def list_embed_keys(self, request: web.Request) -> web.Response:
        principal = require_admin(request)
        cursor = (
            self._embed_keys.find({"tenantId": principal.tenant_id}, NO_ID)
            .sort([("createdAt", 1), ("keyId", 1)])
            .limit(LIST_LIMIT)
        )
        items = [embed_key_view(document) async for document in cursor]
        return json_response(EmbedKeyList(items=items).to_wire())

    @operation(
        "patch",
        EMBED_KEY_PATH,
        "updateEmbedKey",
        "Replace an active embed key's allowed origins.",
        answers={
            200: Answer("Changed.", EmbedKeyView),
            **EMBED_KEY_NOT_FOUND,
            409: Answer("The key is revoked."),
            **BODY_ERRORS,
        },
        body=EmbedKeyUpdate,
    )
    async def update_embed_key(self, request: web.Request) -> web.Response:
        principal = require_admin(request)
        key_id = request.match_info["keyId"]
        body = await read_body(request, EmbedKeyUpdate, self.context.body_limit)
        document = await self._embed_keys.find_one_and_update(
            {"tenantId": principal.tenant_id, "keyId": key_id, "status": EmbedKeyStatus.ACTIVE.value},
            {"$set": {"allowedDomains": body.allowed_domains, "updatedAt": self.context.clock()}},
            projection=NO_ID,
            return_document=ReturnDocument.AFTER,
        )
        if document is None:
            if await self._embed_keys.find_one({"tenantId": principal.tenant_id, "keyId": key_id}) is None:
                raise embed_key_not_found(key_id)
            raise ConflictError("embed_key_revoked", "the embed key is revoked", "keyId")
        log.info("embed_key_updated", key_id=key_id, allowed_domains=len(body.allowed_domains))
        return json_response(embed_key_view(document).to_wire())

    @operation(
        "delete",
        EMBED_KEY_PATH,
        "revokeEmbedKey",
        "Revoke an embed key (idempotent); gateways end its streams within their sweep interval.",
        answers={204: Answer("Revoked."), **EMBED_KEY_NOT_FOUND},
    )
    async def revoke_embed_key(self, request: web.Request) -> web.Response:
        principal = require_admin(request)
        key_id = request.match_info["keyId"]
        now = self.context.clock()
        revoked = await self._embed_keys.update_one(
            {"tenantId": principal.tenant_id, "keyId": key_id, "status": EmbedKeyStatus.ACTIVE.value},
            {"$set": {"status": EmbedKeyStatus.REVOKED.value, "revokedAt": now, "updatedAt": now}},
        )
        if revoked.matched_count == 0 and (
            await self._embed_keys.find_one({"tenantId": principal.tenant_id, "keyId": key_id}) is None
        ):
            raise embed_key_not_found(key_id)
        log.info("embed_key_revoked", key_id=key_id, already=revoked.matched_count == 0)
        return web.Response(status=204)

    # ---------------------------------------------------------------- signing keys

    @operation(
        "post",
        SIGNING_KEYS_PATH,
        "mintBridgeSigningKey",
        "Mint an auth-bridge signing key as NEXT; its secret is in this answer and never again.",
        answers={201: Answer("Minted.", MintedSigningKey, {"Location": "The key's path."})},
    )
    async def mint_signing_key(self, request: web.Request) -> web.Response:
        principal = require_admin(request)
        secret = new_signing_secret()
        now = self.context.clock()
        key = new_signing_key(
            principal.tenant_id,
            kid=new_signing_key_id(),
            ciphertext=self.context.secret_box.encrypt(secret),
            now=now,
        )
        await self._signing_keys.insert_one(key.to_document())
        log.info("bridge_signing_key_minted", kid=key.kid)
        view = signing_key_view(key.to_document(), now)
        minted = MintedSigningKey(**view.model_dump(), secret=secret)
        response = json_response(minted.to_wire(), status=201)
        response.headers["Location"] = SIGNING_KEY_PATH.format(kid=key.kid)
        response.headers["Cache-Control"] = "no-store"
        return response

    @operation(
        "get",
        SIGNING_KEYS_PATH,
        "listBridgeSigningKeys",
        "The tenant's bridge signing keys with their effective status, never their secrets.",
        answers={200: Answer("The keys.", SigningKeyList)},
    )
    async def list_signing_keys(self, request: web.Request) -> web.Response:
        principal = require_admin(request)
        now = self.context.clock()
        cursor = (
            self._signing_keys.find({"tenantId": principal.tenant_id}, {"_id": 0, "secretCiphertext": 0})
            .sort([("createdAt", 1), ("kid", 1)])
            .limit(LIST_LIMIT)
        )
        items = [signing_key_view(document, now) async for document in cursor]
        return json_response(SigningKeyList(items=items).to_wire())

    @operation(
        "post",
        PROMOTE_PATH,
        "promoteBridgeSigningKey",
        "NEXT → ACTIVE; the previous ACTIVE key keeps verifying for the overlap, then is RETIRED.",
        answers={
            200: Answer("Promoted.", SigningKeyView),
            **SIGNING_KEY_NOT_FOUND,
            409: Answer("The key is not NEXT."),
        },
    )
    async def promote_signing_key(self, request: web.Request) -> web.Response:
        """NEXT → ACTIVE; every other ACTIVE key of the tenant gets `retiresAt = now + overlap`
        (with concurrent promotes, the newest promoted key stays: `superseded_signing_keys`)."""
        principal = require_admin(request)
        kid = request.match_info["kid"]
        tenant = {"tenantId": principal.tenant_id}
        current = await self._signing_keys.find_one({**tenant, "kid": kid}, NO_ID)
        if current is None:
            raise signing_key_not_found(kid)
        now = self.context.clock()
        refusal = promotion_refusal(current, now)
        if refusal is not None:
            raise refusal
        # Conditional on NEXT: of two concurrent promotes of one key, one wins and the other gets 409.
        promoted = await self._signing_keys.find_one_and_update(
            {**tenant, "kid": kid, "status": SigningKeyStatus.NEXT.value},
            {"$set": {"status": SigningKeyStatus.ACTIVE.value, "promotedAt": now}},
            projection=NO_ID,
            return_document=ReturnDocument.AFTER,
        )
        if promoted is None:
            raise ConflictError("signing_key_not_next", "the key changed concurrently; list the keys", "kid")
        # The new key verifies before the old ones start retiring, so no moment has none.
        not_retiring = {**tenant, "status": SigningKeyStatus.ACTIVE.value, "retiresAt": None}
        active = self._signing_keys.find(not_retiring, {"_id": 0, "kid": 1, "promotedAt": 1, "createdAt": 1})
        superseded = superseded_signing_keys([document async for document in active])
        retired = await self._signing_keys.update_many(
            {**not_retiring, "kid": {"$in": superseded}}, retirement(now, self.overlap)
        )
        if kid in superseded:  # a concurrent promote of a newer key won: say so in the answer
            promoted = await self._signing_keys.find_one({**tenant, "kid": kid}, NO_ID) or promoted
        log.info("bridge_signing_key_promoted", kid=kid, retiring=retired.modified_count)
        return json_response(signing_key_view(promoted, now).to_wire())

    @operation(
        "delete",
        SIGNING_KEY_PATH,
        "revokeBridgeSigningKey",
        "Revoke a bridge signing key (idempotent); tokens it signed stop verifying.",
        answers={204: Answer("Revoked."), **SIGNING_KEY_NOT_FOUND},
    )
    async def revoke_signing_key(self, request: web.Request) -> web.Response:
        principal = require_admin(request)
        kid = request.match_info["kid"]
        now = self.context.clock()
        revoked = await self._signing_keys.update_one(
            {
                "tenantId": principal.tenant_id,
                "kid": kid,
                "status": {"$ne": SigningKeyStatus.REVOKED.value},
            },
            {"$set": {"status": SigningKeyStatus.REVOKED.value, "revokedAt": now}},
        )
        if revoked.matched_count == 0 and (
            await self._signing_keys.find_one({"tenantId": principal.tenant_id, "kid": kid}) is None
        ):
            raise signing_key_not_found(kid)
        # A leaked key's sessions end too (on every gateway within a sweep), not only its new tokens.
        # Also on a repeated revoke: it finishes what a revoke interrupted before this step did.
        sessions = await self._sessions.update_many(
            {"tenantId": principal.tenant_id, "signingKeyId": kid, "revokedAt": None},
            {"$set": {"revokedAt": now}},
        )
        log.info(
            "bridge_signing_key_revoked",
            kid=kid,
            already=revoked.matched_count == 0,
            sessions=sessions.modified_count,
        )
        return web.Response(status=204)

    # ---------------------------------------------------------------- sessions

    @operation(
        "post",
        REVOKE_SESSIONS_PATH,
        "revokeEmbedSessions",
        "End every live embed session of one customer on every gateway replica.",
        answers={200: Answer("How many sessions were revoked.", SessionsRevoked), **BODY_ERRORS},
        body=EmbedSessionRevocation,
    )
    async def revoke_sessions(self, request: web.Request) -> web.Response:
        """A customer's browser sessions end on every gateway replica within its sweep interval."""
        principal = require_admin(request)
        body = await read_body(request, EmbedSessionRevocation, self.context.body_limit)
        result = await self._sessions.update_many(
            {"tenantId": principal.tenant_id, "customerId": body.customer_id, "revokedAt": None},
            {"$set": {"revokedAt": self.context.clock()}},
        )
        log.info("embed_sessions_revoked", end_customer_id=body.customer_id, sessions=result.modified_count)
        return json_response(SessionsRevoked(revoked=result.modified_count).to_wire())
