"""The gateway's MongoDB adapter for embed keys, signing keys and sessions (shapes in aforo.shared.embed).

Thin on purpose: lookups, the session writes, the record of exchanged bridge tokens and the
revocation sweep's two queries. Embed keys are
cached per replica for `embed_key_cache_seconds`, since every stream connect and CORS preflight
needs one; a revoked key still ends open streams at the next sweep. Sessions are never cached (a
revoked one must not open a stream), but the lookups of one event-loop turn share their queries: when
thousands of widgets reconnect at once (a replica drained, a deploy), one round trip per stream would
make the database the bound on how fast a replica fills.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from aforo.shared.batched_lookup import DEFAULT_MAX_BATCH, BatchedLookup
from aforo.shared.collections import BRIDGE_SIGNING_KEYS, BRIDGE_TOKEN_USES, EMBED_KEYS, EMBED_SESSIONS
from aforo.shared.embed import (
    BridgeTokenUseDocument,
    EmbedKeyDocument,
    EmbedKeyStatus,
    EmbedSessionDocument,
    SigningKeyDocument,
)
from aforo.shared.mongo import Document, MongoStore
from aforo.shared.secret_box import SecretBox
from aforo.shared.ttl_cache import TtlCache
from aforo.sse_gateway.embed_tokens import SigningKey

_CACHE_LIMIT = 10_000
SESSION_LOOKUP_BATCH = DEFAULT_MAX_BATCH
"""Session ids per `$in` query; the queries of one loop turn run concurrently (see
`aforo.shared.batched_lookup`)."""


@dataclass(frozen=True, slots=True)
class Revocations:
    """(tenant id, id) pairs revoked since a sweep's `since`."""

    sessions: frozenset[tuple[str, str]]
    embed_keys: frozenset[tuple[str, str]]


class EmbedStore:
    def __init__(
        self,
        mongo: MongoStore,
        secret_box: SecretBox,
        *,
        cache_seconds: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._mongo = mongo
        self._secret_box = secret_box
        self._cache = TtlCache(cache_seconds, max_entries=_CACHE_LIMIT, clock=monotonic)
        self._session_lookups: BatchedLookup[str, str, EmbedSessionDocument] = BatchedLookup(
            self._find_sessions, SESSION_LOOKUP_BATCH
        )

    @property
    def _keys(self) -> AsyncCollection[Document]:
        return self._mongo.collection(EMBED_KEYS.collection)

    @property
    def _signing_keys(self) -> AsyncCollection[Document]:
        return self._mongo.collection(BRIDGE_SIGNING_KEYS.collection)

    @property
    def _sessions(self) -> AsyncCollection[Document]:
        return self._mongo.collection(EMBED_SESSIONS.collection)

    @property
    def _token_uses(self) -> AsyncCollection[Document]:
        return self._mongo.collection(BRIDGE_TOKEN_USES.collection)

    async def embed_key(self, tenant_id: str, key_id: str) -> EmbedKeyDocument | None:
        async def load() -> EmbedKeyDocument | None:
            document = await self._keys.find_one({"tenantId": tenant_id, "keyId": key_id}, {"_id": 0})
            return None if document is None else EmbedKeyDocument.model_validate(document)

        key: EmbedKeyDocument | None = await self._cache.get_or_load(("embed_key", tenant_id, key_id), load)
        return key

    async def origin_has_active_key(self, origin: str) -> bool:
        """For CORS preflights, which carry no credentials: does any active embed key allow `origin`?"""

        async def load() -> bool:
            found = await self._keys.find_one(
                {"allowedDomains": origin, "status": EmbedKeyStatus.ACTIVE.value}, {"_id": 1}
            )
            return found is not None

        allowed: bool = await self._cache.get_or_load(("origin", origin), load)
        return allowed

    async def signing_key(self, tenant_id: str, kid: str) -> SigningKey | None:
        document = await self._signing_keys.find_one({"tenantId": tenant_id, "kid": kid}, {"_id": 0})
        if document is None:
            return None
        stored = SigningKeyDocument.model_validate(document)
        return SigningKey(
            tenant_id=stored.tenant_id,
            kid=stored.kid,
            secret=self._secret_box.decrypt(stored.secret_ciphertext),
            status=stored.status,
            retires_at=stored.retires_at,
        )

    async def record_bridge_token_use(self, use: BridgeTokenUseDocument) -> bool:
        """Remember an exchanged bridge token; False when its (tenant, jti) was exchanged before.
        The unique index decides, so two replicas racing on one token cannot both win."""
        try:
            await self._token_uses.insert_one(use.to_document())
        except DuplicateKeyError:
            return False
        return True

    async def create_session(self, session: EmbedSessionDocument) -> None:
        await self._sessions.insert_one(session.to_document())

    async def session(self, tenant_id: str, session_id: str) -> EmbedSessionDocument | None:
        """The session record, or None; read from the database on every call (never cached).

        The callers of one event-loop turn share `find({tenantId, sessionId: {$in: [...]}})` queries of
        at most `SESSION_LOOKUP_BATCH` ids, sent on the next turn: no timer, so a lone lookup waits
        for nothing, and a burst of connects costs a round trip per batch instead of per stream.
        """
        return await self._session_lookups.get(tenant_id, session_id)

    async def _find_sessions(self, tenant_id: str, session_ids: list[str]) -> dict[str, EmbedSessionDocument]:
        """One query of the batched session lookup: a tenant's sessions among `session_ids`, by id."""
        return {
            str(document["sessionId"]): EmbedSessionDocument.model_validate(document)
            async for document in self._sessions.find(
                {"tenantId": tenant_id, "sessionId": {"$in": session_ids}}, {"_id": 0}
            )
        }

    async def extend_session(self, tenant_id: str, session_id: str, expires_at: datetime) -> bool:
        """Record a refresh; False when the session was revoked meanwhile."""
        result = await self._sessions.update_one(
            {"tenantId": tenant_id, "sessionId": session_id, "revokedAt": None},
            {"$set": {"expiresAt": expires_at}},
        )
        return result.matched_count == 1

    async def revoke_session(self, tenant_id: str, session_id: str, now: datetime) -> None:
        await self._sessions.update_one(
            {"tenantId": tenant_id, "sessionId": session_id, "revokedAt": None}, {"$set": {"revokedAt": now}}
        )

    async def revoked_since(self, since: datetime) -> Revocations:
        """Sessions and embed keys revoked at or after `since`, across tenants (the sweep's two queries)."""
        window: dict[str, Any] = {"revokedAt": {"$gte": since}}
        sessions = {
            (str(document["tenantId"]), str(document["sessionId"]))
            async for document in self._sessions.find(window, {"_id": 0, "tenantId": 1, "sessionId": 1})
        }
        keys = {
            (str(document["tenantId"]), str(document["keyId"]))
            async for document in self._keys.find(window, {"_id": 0, "tenantId": 1, "keyId": 1})
        }
        return Revocations(sessions=frozenset(sessions), embed_keys=frozenset(keys))
