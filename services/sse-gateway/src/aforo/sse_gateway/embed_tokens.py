"""Bridge tokens in, session JWTs out: every verification rule of the embed auth bridge. Pure.

A **bridge token** is signed by the integrator's server with a per-tenant auth-bridge signing key:
HS256, header `kid` = the key id, claims `tenant_id`, `customer_id`, `jti` (unique per token: the
gateway exchanges each token once), `iat`, `exp`, with `exp` at most `BRIDGE_TOKEN_MAX_TTL_SECONDS`
ahead of now and of `iat`. It verifies only under a key of the same tenant whose effective status is
NEXT or ACTIVE. The signature is checked before anything about the key is told: an unknown `kid`
and a bad signature get the same answer, so a caller without the secret learns nothing about keys.

A **session JWT** is what the gateway hands the browser for it: HS256 under the gateway's own
secret, scoped to (tenant, customer), naming its session record (`sid`) and embed key (`ekid`).

The algorithm is fixed here, never taken from a token header. Times are checked against the `now`
passed in (PyJWT's own clock checks are switched off), which keeps these functions testable.
"""

from __future__ import annotations

import json
import secrets as random_secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import jwt
from jwt.types import Options
from jwt.utils import base64url_decode

from aforo.shared.embed import BRIDGE_TOKEN_MAX_TTL_SECONDS, SigningKeyStatus, effective_signing_status
from aforo.shared.request_json import check_identifier_text

ALGORITHM: Final = "HS256"
SESSION_ISSUER: Final = "aforo-sse-gateway"
SESSION_AUDIENCE: Final = "aforo-embed"
MIN_SESSION_SECRET_BYTES: Final = 32
MAX_ID_LENGTH: Final = 128
MAX_TOKEN_LENGTH: Final = 4096
_UNKNOWN_KEY_SECRET: Final = random_secrets.token_urlsafe(32)
"""What a token naming an unknown `kid` is verified under: it never verifies, so the refusal is the
one a wrong signature gets, after the same work."""


class EmbedAuthError(Exception):
    """An expected refusal: the HTTP status and the JSON error (code, message, field) the client sees."""

    def __init__(
        self, status: int, code: str, message: str, field: str | None = None, retry_after: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.retry_after = retry_after


def _unauthenticated(code: str, message: str, field: str | None = None) -> EmbedAuthError:
    return EmbedAuthError(401, code, message, field)


def _bad_signature() -> EmbedAuthError:
    return _unauthenticated("invalid_token", "the token signature does not verify")


@dataclass(frozen=True, slots=True)
class BridgeTokenHeader:
    """What a bridge token says about itself before it is verified: which key to fetch."""

    kid: str
    claimed_tenant_id: str


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A signing key as verification needs it: the decrypted secret and its lifecycle."""

    tenant_id: str
    kid: str
    secret: str = field(repr=False)
    status: SigningKeyStatus
    retires_at: datetime | None


@dataclass(frozen=True, slots=True)
class BridgeClaims:
    tenant_id: str
    customer_id: str
    kid: str
    jti: str
    expires_at: datetime
    """The last moment (with the leeway) the token is accepted: its `jti` must be remembered until then."""


@dataclass(frozen=True, slots=True)
class SessionClaims:
    tenant_id: str
    customer_id: str
    session_id: str
    embed_key_id: str
    issued_at: datetime
    expires_at: datetime


def _identifier(claims: Mapping[str, Any], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_ID_LENGTH:
        raise _unauthenticated(
            "invalid_token", f"the {name} claim must be a non-empty string of at most {MAX_ID_LENGTH}", name
        )
    try:
        check_identifier_text(value)
    except ValueError as error:
        raise _unauthenticated("invalid_token", f"the {name} claim {error}", name) from None
    return value


def _number(claims: Mapping[str, Any], name: str) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _unauthenticated("invalid_token", f"the {name} claim must be a NumericDate", name)
    return float(value)


def _header(token: str) -> Mapping[str, Any]:
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
        raise _unauthenticated("malformed_token", "the token is not a well-formed JWT")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise _unauthenticated("malformed_token", "the token is not a well-formed JWT") from None
    if header.get("alg") != ALGORITHM:
        raise _unauthenticated("invalid_token", f"the token must be signed with {ALGORITHM}", "alg")
    return header


def _session_header(token: str) -> None:
    """A session token's header says HS256, read from its first segment alone.

    `_header` would do, but PyJWT's unverified read decodes and checks every segment character by
    character, and the verified decode that follows does it all again: on a gateway taking
    thousands of stream connects at once, that first pass is about a third of the token check.
    """
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
        raise _unauthenticated("malformed_token", "the token is not a well-formed JWT")
    try:
        header = json.loads(base64url_decode(token.partition(".")[0]))
    except ValueError:  # bad base64, bad UTF-8 or bad JSON
        raise _unauthenticated("malformed_token", "the token is not a well-formed JWT") from None
    if not isinstance(header, dict):
        raise _unauthenticated("malformed_token", "the token is not a well-formed JWT")
    if header.get("alg") != ALGORITHM:
        raise _unauthenticated("invalid_token", f"the token must be signed with {ALGORITHM}", "alg")


def _verified_claims(token: str, secrets: Sequence[str], audience: str | None = None) -> dict[str, Any]:
    """The claims once the signature verifies under one of `secrets`; time claims are left to callers."""
    options: Options = {
        "verify_exp": False,
        "verify_iat": False,
        "verify_nbf": False,
        "verify_aud": audience is not None,
    }
    for secret in secrets:
        try:
            claims: dict[str, Any] = jwt.decode(
                token, secret, algorithms=[ALGORITHM], audience=audience, options=options
            )
        except jwt.InvalidSignatureError:
            continue
        except (jwt.InvalidAudienceError, jwt.MissingRequiredClaimError):
            raise _unauthenticated(
                "invalid_token", "the token is meant for another audience", "aud"
            ) from None
        except jwt.DecodeError:
            raise _unauthenticated("malformed_token", "the token is not a well-formed JWT") from None
        except jwt.InvalidTokenError:
            raise _unauthenticated("invalid_token", "the token is not valid") from None
        return claims
    raise _bad_signature()


def bridge_token_header(token: str) -> BridgeTokenHeader:
    """Which signing key a bridge token names (and the tenant it claims, to look the key up with)."""
    header = _header(token)
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid or len(kid) > MAX_ID_LENGTH:
        raise _unauthenticated("invalid_token", "the bridge token header needs the signing key id", "kid")
    try:
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        raise _unauthenticated("malformed_token", "the token is not a well-formed JWT") from None
    return BridgeTokenHeader(kid=kid, claimed_tenant_id=_identifier(unverified, "tenant_id"))


def verify_bridge_token(
    token: str, key: SigningKey | None, *, now: datetime, leeway_seconds: int
) -> BridgeClaims:
    """The bridge token's (tenant, customer, jti), or the refusal (401) saying what is wrong with it.

    Replay (a `jti` already exchanged) is the caller's to refuse: it needs the database.
    """
    header = bridge_token_header(token)
    known = key if key is not None and key.kid == header.kid else None
    claims = _verified_claims(token, [known.secret if known is not None else _UNKNOWN_KEY_SECRET])
    if known is None:  # unreachable unless a token was signed with a random per-process secret
        raise _bad_signature()
    # Only a caller holding the key's secret gets here, so saying the key is retired tells no secret.
    status = effective_signing_status(known.status, known.retires_at, now)
    if status not in (SigningKeyStatus.NEXT, SigningKeyStatus.ACTIVE):
        raise _unauthenticated(
            "signing_key_not_usable", f"the signing key is {status.value}; sign with the ACTIVE key", "kid"
        )
    tenant_id = _identifier(claims, "tenant_id")
    customer_id = _identifier(claims, "customer_id")
    jti = _identifier(claims, "jti")
    if tenant_id != known.tenant_id:
        raise _unauthenticated(
            "invalid_token", "the token's tenant does not own this signing key", "tenant_id"
        )
    expires, issued = _number(claims, "exp"), _number(claims, "iat")
    now_seconds = now.timestamp()
    if expires <= now_seconds - leeway_seconds:
        raise _unauthenticated("token_expired", "the bridge token has expired", "exp")
    if issued > now_seconds + leeway_seconds:
        raise _unauthenticated("token_not_yet_valid", "the bridge token is issued in the future", "iat")
    if expires - now_seconds > BRIDGE_TOKEN_MAX_TTL_SECONDS + leeway_seconds or (
        expires - issued > BRIDGE_TOKEN_MAX_TTL_SECONDS + leeway_seconds
    ):
        raise _unauthenticated(
            "token_lifetime_too_long",
            f"a bridge token may live at most {BRIDGE_TOKEN_MAX_TTL_SECONDS} s (exp - iat, exp - now)",
            "exp",
        )
    return BridgeClaims(
        tenant_id=tenant_id,
        customer_id=customer_id,
        kid=header.kid,
        jti=jti,
        expires_at=datetime.fromtimestamp(expires + leeway_seconds, tz=UTC),
    )


def issue_session_token(
    *,
    tenant_id: str,
    customer_id: str,
    session_id: str,
    embed_key_id: str,
    secret: str,
    now: datetime,
    ttl: timedelta,
) -> tuple[str, datetime]:
    """A session JWT and its expiry (whole seconds, as the JWT carries it)."""
    issued = int(now.timestamp())
    expires = issued + int(ttl.total_seconds())
    token = jwt.encode(
        {
            "iss": SESSION_ISSUER,
            "aud": SESSION_AUDIENCE,
            "tenant_id": tenant_id,
            "customer_id": customer_id,
            "sid": session_id,
            "ekid": embed_key_id,
            "iat": issued,
            "exp": expires,
        },
        secret,
        algorithm=ALGORITHM,
    )
    return token, datetime.fromtimestamp(expires, tz=UTC)


def verify_session_token(
    token: str, secrets: Sequence[str], *, now: datetime, leeway_seconds: int
) -> SessionClaims:
    """The session's scope, or 401. `secrets` are the gateway's, newest first (rotation)."""
    _session_header(token)
    claims = _verified_claims(token, secrets, audience=SESSION_AUDIENCE)
    if claims.get("iss") != SESSION_ISSUER:
        raise _unauthenticated("invalid_token", "the token was not issued by this gateway", "iss")
    expires, issued = _number(claims, "exp"), _number(claims, "iat")
    if expires <= now.timestamp() - leeway_seconds:
        raise _unauthenticated("token_expired", "the session token has expired; refresh it", "exp")
    return SessionClaims(
        tenant_id=_identifier(claims, "tenant_id"),
        customer_id=_identifier(claims, "customer_id"),
        session_id=_identifier(claims, "sid"),
        embed_key_id=_identifier(claims, "ekid"),
        issued_at=datetime.fromtimestamp(issued, tz=UTC),
        expires_at=datetime.fromtimestamp(expires, tz=UTC),
    )


def session_secrets(setting: str | None) -> list[str]:
    """The comma-separated `session_secret` setting, newest first; raises ValueError (never echoing it)."""
    values = [part.strip() for part in (setting or "").split(",") if part.strip()]
    if not values:
        raise ValueError(
            "session_secret (AFORO_SSE_GATEWAY_SESSION_SECRET) is required: session JWTs are signed with it"
        )
    if any(len(value.encode()) < MIN_SESSION_SECRET_BYTES for value in values):
        raise ValueError(
            f"session_secret (AFORO_SSE_GATEWAY_SESSION_SECRET): each secret must be at least "
            f"{MIN_SESSION_SECRET_BYTES} bytes"
        )
    return values
