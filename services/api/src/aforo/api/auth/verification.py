"""Token verification: the signature with the configured algorithm, then the time and identity claims."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import jwt

from aforo.api.auth.config import AuthConfig
from aforo.api.auth.errors import UnauthenticatedError
from aforo.api.auth.jwks import JwksKeySet
from aforo.api.auth.principal import Principal, principal_from_claims


class TokenVerifier(Protocol):
    """Anything that turns a bearer token into a principal or raises `AuthError`."""

    async def verify(self, token: str) -> Principal: ...


def _refusal_for(error: jwt.InvalidTokenError) -> UnauthenticatedError:
    """PyJWT's error → the code a client sees. Claim errors only follow a good signature."""
    if isinstance(error, jwt.ExpiredSignatureError):
        return UnauthenticatedError("token_expired", "the token has expired", "exp")
    if isinstance(error, jwt.ImmatureSignatureError):
        return UnauthenticatedError("token_not_yet_valid", "the token is not valid yet (nbf or iat ahead)")
    if isinstance(error, jwt.InvalidIssuerError):
        return UnauthenticatedError("invalid_issuer", "the token was issued by another issuer", "iss")
    if isinstance(error, jwt.InvalidAudienceError):
        return UnauthenticatedError("invalid_audience", "the token is meant for another audience", "aud")
    if isinstance(error, jwt.MissingRequiredClaimError):
        return UnauthenticatedError("invalid_token", f"the token has no {error.claim} claim", error.claim)
    if isinstance(error, jwt.InvalidSignatureError):
        return UnauthenticatedError("invalid_token", "the token signature does not verify")
    if isinstance(error, jwt.DecodeError):
        return UnauthenticatedError("malformed_token", "the token is not a well-formed JWT")
    return UnauthenticatedError("invalid_token", "the token is not valid")


def check_time_claims(
    claims: Mapping[str, Any], *, now: float, max_lifetime_seconds: float, leeway_seconds: float
) -> None:
    """`exp`, `iat`, `nbf` are JSON numbers (RFC 7519 NumericDate; PyJWT would take `"1e10"`-like
    strings), and the token lives at most `max_lifetime_seconds`: `exp - iat`, and `exp - now`."""
    for claim in ("exp", "iat", "nbf"):
        value = claims.get(claim)
        if claim in claims and (
            isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
        ):
            raise UnauthenticatedError(
                "invalid_token", f"the {claim} claim must be a number (seconds since the epoch)", claim
            )
    expires = float(claims["exp"])
    issued = claims.get("iat")
    too_long = expires - now > max_lifetime_seconds + leeway_seconds or (
        issued is not None and expires - float(issued) > max_lifetime_seconds
    )
    if too_long:
        raise UnauthenticatedError(
            "token_lifetime_too_long",
            f"the token lives longer than the {int(max_lifetime_seconds)} s this API accepts",
            "exp",
        )


class JwtVerifier:
    """Verifies bearer JWTs as configured: HS256 with the secret, or RS256 with Keycloak's JWKS."""

    def __init__(
        self,
        config: AuthConfig,
        *,
        key_set: JwksKeySet | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._clock = clock
        if config.mode == "jwks" and key_set is None:
            assert config.jwks_url is not None  # AuthConfig refuses jwks mode without a URL
            key_set = JwksKeySet(
                config.jwks_url,
                cache_seconds=config.jwks_cache_seconds,
                min_refresh_seconds=config.jwks_min_refresh_seconds,
            )
        self._key_set = key_set if config.mode == "jwks" else None

    async def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise UnauthenticatedError("malformed_token", "the token is not a well-formed JWT") from None
        if header.get("alg") != self._config.algorithm:
            # Checked before any key is chosen: the token never picks the algorithm.
            raise UnauthenticatedError(
                "invalid_token", f"the token must be signed with {self._config.algorithm}", "alg"
            )
        key = await self._verification_key(header)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[self._config.algorithm],
                issuer=self._config.issuer,
                audience=self._config.audience,
                leeway=self._config.leeway_seconds,
                options={
                    "require": ["exp", "sub"],
                    "verify_iss": self._config.issuer is not None,
                    # PyJWT refuses any token with `aud` when no audience is configured; unset means unchecked.
                    "verify_aud": self._config.audience is not None,
                },
            )
        except jwt.InvalidTokenError as error:
            raise _refusal_for(error) from None
        check_time_claims(
            claims,
            now=self._clock(),
            max_lifetime_seconds=self._config.max_token_lifetime_seconds,
            leeway_seconds=self._config.leeway_seconds,
        )
        return principal_from_claims(claims)

    async def _verification_key(self, header: Mapping[str, Any]) -> Any:
        if self._key_set is None:
            return self._config.hs256_secret
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise UnauthenticatedError("invalid_token", "the token header has no kid", "kid")
        return (await self._key_set.key_for(kid)).key

    async def close(self) -> None:
        if self._key_set is not None:
            await self._key_set.close()
