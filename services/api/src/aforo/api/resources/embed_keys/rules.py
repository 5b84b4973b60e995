"""Embed keys, auth-bridge signing keys and embed sessions: the wire models and the pure decisions.

Which key may be promoted, which ACTIVE keys a promote retires (concurrent promotes included), and
what an admin sees of a key (its effective status, never its secret). The stored shapes are owned
by `aforo.shared.embed`, which the SSE gateway reads too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import Field

from aforo.api.problems import ConflictError
from aforo.api.wire import CustomerId, RequestBody, ResponseBody, Timestamp
from aforo.shared.embed import (
    AllowedDomains,
    EmbedKeyDocument,
    EmbedKeyStatus,
    SigningKeyDocument,
    SigningKeyStatus,
)


class EmbedKeyCreate(RequestBody):
    """`POST /api/v1/admin/embed-keys`: the exact origins (`https://app.acme.com`) that may embed."""

    allowed_domains: AllowedDomains = Field(alias="allowedDomains")


class EmbedKeyUpdate(RequestBody):
    """`PATCH /api/v1/admin/embed-keys/{keyId}`: the new list replaces the old one."""

    allowed_domains: AllowedDomains = Field(alias="allowedDomains")


class EmbedSessionRevocation(RequestBody):
    """`POST /api/v1/admin/embed-sessions/revoke`: every live embed session of one customer."""

    customer_id: CustomerId = Field(alias="customerId")


class EmbedKeyView(ResponseBody):
    key_id: str = Field(alias="keyId")
    allowed_domains: list[str] = Field(alias="allowedDomains")
    status: EmbedKeyStatus
    created_at: Timestamp = Field(alias="createdAt")
    updated_at: Timestamp = Field(alias="updatedAt")
    revoked_at: Timestamp | None = Field(alias="revokedAt")


class EmbedKeyList(ResponseBody):
    items: list[EmbedKeyView]


class SigningKeyView(ResponseBody):
    """A signing key as admins see it: its effective status, never its secret."""

    kid: str
    status: SigningKeyStatus
    created_at: Timestamp = Field(alias="createdAt")
    promoted_at: Timestamp | None = Field(alias="promotedAt")
    retires_at: Timestamp | None = Field(alias="retiresAt")
    revoked_at: Timestamp | None = Field(alias="revokedAt")


class MintedSigningKey(SigningKeyView):
    """The mint response: the one time the secret is shown. Store it in the integrator's server."""

    secret: str


class SigningKeyList(ResponseBody):
    items: list[SigningKeyView]


class SessionsRevoked(ResponseBody):
    revoked: int


def embed_key_view(document: Mapping[str, Any]) -> EmbedKeyView:
    key = EmbedKeyDocument.model_validate(document)
    return EmbedKeyView(
        key_id=key.key_id,
        allowed_domains=key.allowed_domains,
        status=key.status,
        created_at=key.created_at,
        updated_at=key.updated_at,
        revoked_at=key.revoked_at,
    )


def signing_key_view(document: Mapping[str, Any], now: datetime) -> SigningKeyView:
    """Lists read keys without their ciphertext, which a view never shows anyway."""
    key = SigningKeyDocument.model_validate({"secretCiphertext": "", **document})
    return SigningKeyView(
        kid=key.kid,
        status=key.effective_status(now),
        created_at=key.created_at,
        promoted_at=key.promoted_at,
        retires_at=key.retires_at,
        revoked_at=key.revoked_at,
    )


def new_embed_key(tenant_id: str, body: EmbedKeyCreate, *, key_id: str, now: datetime) -> EmbedKeyDocument:
    return EmbedKeyDocument(
        tenant_id=tenant_id,
        key_id=key_id,
        allowed_domains=body.allowed_domains,
        status=EmbedKeyStatus.ACTIVE,
        created_at=now,
        updated_at=now,
    )


def new_signing_key(tenant_id: str, *, kid: str, ciphertext: str, now: datetime) -> SigningKeyDocument:
    """A minted key starts NEXT: it verifies at once, so the integrator can deploy it before the promote."""
    return SigningKeyDocument(
        tenant_id=tenant_id,
        kid=kid,
        status=SigningKeyStatus.NEXT,
        secret_ciphertext=ciphertext,
        created_at=now,
    )


def promotion_refusal(document: Mapping[str, Any], now: datetime) -> ConflictError | None:
    """Only a NEXT key can be promoted; anything else says what it is."""
    status = SigningKeyDocument.model_validate(document).effective_status(now)
    if status is SigningKeyStatus.NEXT:
        return None
    return ConflictError(
        "signing_key_not_next", f"only a NEXT key can be promoted; this key is {status.value}", "kid"
    )


def retirement(now: datetime, overlap: timedelta) -> dict[str, Any]:
    """The update for the ACTIVE key(s) a promote supersedes: they keep verifying until `retiresAt`."""
    return {"$set": {"retiresAt": now + overlap}}


def superseded_signing_keys(active: Iterable[Mapping[str, Any]]) -> list[str]:
    """Of a tenant's ACTIVE keys not yet retiring, every kid but the newest by (`promotedAt`, `kid`).

    Each promote sets its key ACTIVE, then reads the ACTIVE keys and retires all but the newest, its
    own key included when a concurrent promote's key is newer. Whichever promote reads last sees both
    keys, and the newest is never retired by anyone: two concurrent promotes leave exactly one key
    ACTIVE without `retiresAt`, never none and never two.
    """
    documents = list(active)
    if not documents:
        return []
    newest = max(documents, key=_promotion_order)
    return sorted(str(document["kid"]) for document in documents if document is not newest)


def _promotion_order(document: Mapping[str, Any]) -> tuple[datetime, str]:
    promoted_at = document.get("promotedAt") or document["createdAt"]
    return (_utc(promoted_at), str(document["kid"]))


def _utc(moment: datetime) -> datetime:
    """MongoDB hands back naive UTC datetimes unless the client is tz-aware; compare them alike."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
