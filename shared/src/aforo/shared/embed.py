"""Embed keys, auth-bridge signing keys and embed sessions: the documents the API writes and the SSE
gateway reads, and the decisions both sides must make the same way.

- An **embed key** is a tenant's public key id for browser widgets plus the exact origins allowed to
  use it (`allowedDomains`). The gateway checks a browser's `Origin` against that list.
- An **auth-bridge signing key** is a per-tenant HMAC secret (stored encrypted with `SecretBox`) that
  the integrator's server signs short-lived bridge tokens with. Lifecycle NEXT → ACTIVE → RETIRED, or
  REVOKED at any point; only NEXT and ACTIVE keys verify (see `signing_key_verifies`).
- An **embed session** is what a bridge token is exchanged for at the gateway: a short-lived session
  JWT scoped to (tenant, customer), refreshable until its absolute lifetime ends, revocable.

Pure: no I/O here, so the API's and the gateway's tests need no broker or database for these rules.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

BRIDGE_TOKEN_MAX_TTL_SECONDS: Final = 300
"""A bridge token's `exp` may be at most this far ahead of its verification (and of its `iat`)."""

MAX_ALLOWED_DOMAINS: Final = 50
MAX_ORIGIN_LENGTH: Final = 255
DEFAULT_PORTS: Final = {"http": 80, "https": 443}


class EmbedKeyStatus(StrEnum):
    ACTIVE = "ACTIVE"
    REVOKED = "REVOKED"


class SigningKeyStatus(StrEnum):
    """NEXT (minted, already verifies), ACTIVE, RETIRED (overlap passed), REVOKED."""

    NEXT = "NEXT"
    ACTIVE = "ACTIVE"
    RETIRED = "RETIRED"
    REVOKED = "REVOKED"


VERIFYING_STATUSES: Final = frozenset({SigningKeyStatus.NEXT, SigningKeyStatus.ACTIVE})
"""Bridge tokens signed by a NEXT key verify too, so an integrator can switch before the promote."""


# --------------------------------------------------------------------------- origins


def normalise_origin(value: str) -> str:
    """An exact web origin as browsers send it in `Origin`: `scheme://host[:port]`, lower case,
    default port dropped. Raises ValueError (the reason, not the value).

    An internationalised host must be given in its punycode (`xn--`) form, which is what browsers
    send: converting here would need IDNA 2008 (Python's codec is IDNA 2003, which maps `faß.de` to
    `fass.de`, another domain), so a non-ASCII host is refused instead of guessed at."""
    if not isinstance(value, str) or not value or len(value) > MAX_ORIGIN_LENGTH:
        raise ValueError(f"must be an origin of at most {MAX_ORIGIN_LENGTH} characters")
    if any(character.isspace() or ord(character) < 0x20 for character in value):
        raise ValueError("must not contain whitespace or control characters")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValueError("is not a valid origin") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ValueError("must be an http or https origin")
    if "@" in parts.netloc or not parts.hostname:
        raise ValueError("must be scheme://host[:port], with a host and no credentials")
    if parts.path not in ("", "/") or parts.query or parts.fragment or value.endswith(("?", "#")):
        raise ValueError("must be an origin only (scheme://host[:port]): no path, query or fragment")
    if port == 0:
        raise ValueError("must not use port 0")
    host = parts.hostname.lower()
    if ":" in host:  # an IPv6 literal; urlsplit drops the brackets
        host = f"[{host}]"
    elif not host.isascii():
        raise ValueError(
            "has a non-ASCII host name: give its punycode form (https://xn--...), as browsers send it"
        )
    if "*" in host:
        raise ValueError("must be an exact origin (no wildcards)")
    return f"{scheme}://{host}" if port in (None, DEFAULT_PORTS[scheme]) else f"{scheme}://{host}:{port}"


def origin_allowed(origin: str | None, allowed_domains: Collection[str]) -> bool:
    """True only when the request's `Origin` is one of the key's exact origins.

    A missing Origin, the opaque `null` origin (sandboxed frames, file://) and anything that does not
    parse are refused: the check is an allowlist, so doubt means no.
    """
    if origin is None or origin == "null":
        return False
    try:
        return normalise_origin(origin) in allowed_domains
    except ValueError:
        return False


def _allowed_domains(values: list[str]) -> list[str]:
    normalised = [normalise_origin(value) for value in values]
    return list(dict.fromkeys(normalised))


AllowedDomains = Annotated[
    list[str],
    Field(min_length=1, max_length=MAX_ALLOWED_DOMAINS),
    AfterValidator(_allowed_domains),
]
"""Exact origins, normalised and de-duplicated in order; at least one."""


# --------------------------------------------------------------------------- signing keys


def effective_signing_status(
    stored: SigningKeyStatus, retires_at: datetime | None, now: datetime
) -> SigningKeyStatus:
    """What a signing key is now: a superseded ACTIVE key stays ACTIVE until `retiresAt`, then RETIRED."""
    if stored is SigningKeyStatus.ACTIVE and retires_at is not None and now >= retires_at:
        return SigningKeyStatus.RETIRED
    return stored


def signing_key_verifies(stored: SigningKeyStatus, retires_at: datetime | None, now: datetime) -> bool:
    return effective_signing_status(stored, retires_at, now) in VERIFYING_STATUSES


# --------------------------------------------------------------------------- identifiers


def new_embed_key_id() -> str:
    """A public embed key id; it appears in integrators' pages, so it is random, not a secret."""
    return f"ek_{secrets.token_urlsafe(18)}"


def new_signing_key_id() -> str:
    """The `kid` an integrator puts in the bridge token header."""
    return f"bsk_{secrets.token_hex(12)}"


def new_signing_secret() -> str:
    """256 random bits, url-safe: the HS256 key of bridge tokens (shown once, then stored encrypted)."""
    return secrets.token_urlsafe(32)


def new_session_id() -> str:
    return f"es_{secrets.token_urlsafe(18)}"


# --------------------------------------------------------------------------- documents


class _Document(BaseModel):
    """A MongoDB document of these collections: camelCase fields, unknown fields ignored (`_id`)."""

    model_config = ConfigDict(populate_by_name=True, frozen=True, extra="ignore", serialize_by_alias=True)

    def to_document(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, mode="python")


class EmbedKeyDocument(_Document):
    """`embed_keys`: one per public key id."""

    tenant_id: str = Field(alias="tenantId")
    key_id: str = Field(alias="keyId")
    allowed_domains: list[str] = Field(alias="allowedDomains")
    status: EmbedKeyStatus
    created_at: datetime = Field(alias="createdAt")
    updated_at: datetime = Field(alias="updatedAt")
    revoked_at: datetime | None = Field(default=None, alias="revokedAt")

    @property
    def usable(self) -> bool:
        return self.status is EmbedKeyStatus.ACTIVE


class SigningKeyDocument(_Document):
    """`bridge_signing_keys`: the secret only as ciphertext; `retiresAt` set when a newer key is promoted."""

    tenant_id: str = Field(alias="tenantId")
    kid: str
    status: SigningKeyStatus
    secret_ciphertext: str = Field(alias="secretCiphertext", repr=False)
    created_at: datetime = Field(alias="createdAt")
    promoted_at: datetime | None = Field(default=None, alias="promotedAt")
    retires_at: datetime | None = Field(default=None, alias="retiresAt")
    revoked_at: datetime | None = Field(default=None, alias="revokedAt")

    def effective_status(self, now: datetime) -> SigningKeyStatus:
        return effective_signing_status(self.status, self.retires_at, now)


class EmbedSessionDocument(_Document):
    """`embed_sessions`: one per bridge exchange; `revokedAt` ends it everywhere within a sweep interval."""

    tenant_id: str = Field(alias="tenantId")
    session_id: str = Field(alias="sessionId")
    customer_id: str = Field(alias="customerId")
    embed_key_id: str = Field(alias="embedKeyId")
    signing_key_id: str = Field(alias="signingKeyId")
    origin: str
    created_at: datetime = Field(alias="createdAt")
    expires_at: datetime = Field(alias="expiresAt", description="The latest session token's expiry.")
    ends_at: datetime = Field(alias="endsAt", description="No refresh beyond this: a new exchange is needed.")
    revoked_at: datetime | None = Field(default=None, alias="revokedAt")
    purge_at: datetime = Field(alias="purgeAt", description="The TTL index removes the record after this.")

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


class BridgeTokenUseDocument(_Document):
    """`bridge_token_uses`: one per exchanged bridge token (`jti`); a second exchange of it is refused."""

    tenant_id: str = Field(alias="tenantId")
    jti: str
    kid: str
    used_at: datetime = Field(alias="usedAt")
    expires_at: datetime = Field(
        alias="expiresAt", description="The token no longer verifies after this; the TTL index removes it."
    )
