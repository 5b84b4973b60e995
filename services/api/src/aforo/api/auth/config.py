"""How the API verifies tokens (HS256 locally, Keycloak's RS256 JWKS in production), checked at start.

The algorithm comes from this configuration only, never from a token's header.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from pydantic import SecretStr, ValidationError

from aforo.api.settings import ApiSettings

ADMIN_ROLES = frozenset({"OWNER", "ADMIN", "BILLING_ADMIN"})
CUSTOMER_ROLE = "CUSTOMER"
TENANT_HEADER = "X-Tenant-Id"
DEFAULT_PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json"})
MIN_HS256_SECRET_BYTES = 32

AuthMode = Literal["hs256", "jwks"]
ALGORITHM_FOR_MODE: Mapping[AuthMode, str] = {"hs256": "HS256", "jwks": "RS256"}


class AuthConfigError(ValueError):
    """The auth settings cannot work (unknown mode, missing JWKS URL, short secret)."""


class AuthSettings(Protocol):
    """The settings fields auth reads (`ApiSettings` carries them)."""

    @property
    def auth_mode(self) -> str: ...
    @property
    def jwt_hs256_secret(self) -> SecretStr | str | None: ...
    @property
    def jwks_url(self) -> str | None: ...
    @property
    def jwt_issuer(self) -> str | None: ...
    @property
    def jwt_audience(self) -> str | None: ...
    @property
    def max_token_lifetime_seconds(self) -> float: ...


def _blank_to_none(value: str | None) -> str | None:
    """An empty environment variable means "not set"."""
    if value is None or not value.strip():
        return None
    return value.strip()


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """How tokens are verified; validated on construction so a bad setup fails at start, not per request."""

    mode: AuthMode
    hs256_secret: str | None = field(default=None, repr=False)
    jwks_url: str | None = None
    issuer: str | None = None
    audience: str | None = None
    leeway_seconds: int = 30
    jwks_cache_seconds: int = 300
    # The least time between two JWKS fetches, so a flood of unknown `kid`s cannot hammer Keycloak.
    jwks_min_refresh_seconds: float = 10.0
    # A stolen token is useful until its `exp`: one minted to last a century must not be accepted.
    max_token_lifetime_seconds: float = 86_400.0

    def __post_init__(self) -> None:
        if self.mode not in ALGORITHM_FOR_MODE:
            raise AuthConfigError(f"auth_mode (AFORO_API_AUTH_MODE): {self.mode!r} is not 'hs256' or 'jwks'")
        if self.mode == "hs256":
            if self.hs256_secret is None:
                raise AuthConfigError(
                    "jwt_hs256_secret (AFORO_API_JWT_HS256_SECRET) is required when auth_mode is hs256"
                )
            if len(self.hs256_secret.encode()) < MIN_HS256_SECRET_BYTES:
                raise AuthConfigError(
                    f"jwt_hs256_secret (AFORO_API_JWT_HS256_SECRET) must be at least "
                    f"{MIN_HS256_SECRET_BYTES} bytes"
                )
        if self.mode == "jwks" and not self.jwks_url:
            raise AuthConfigError("jwks_url (AFORO_API_JWKS_URL) is required when auth_mode is jwks")
        if self.leeway_seconds < 0:
            raise AuthConfigError("leeway_seconds must not be negative")
        if self.jwks_cache_seconds <= 0:
            raise AuthConfigError("jwks_cache_seconds must be positive")
        if self.jwks_min_refresh_seconds < 0:
            raise AuthConfigError("jwks_min_refresh_seconds must not be negative")
        if self.max_token_lifetime_seconds <= 0:
            raise AuthConfigError(
                "max_token_lifetime_seconds (AFORO_API_MAX_TOKEN_LIFETIME_SECONDS) must be positive"
            )

    @property
    def algorithm(self) -> str:
        """The one algorithm a token may use, fixed by the mode."""
        return ALGORITHM_FOR_MODE[self.mode]

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> AuthConfig:
        secret = settings.jwt_hs256_secret
        if isinstance(secret, SecretStr):
            secret = secret.get_secret_value()
        mode = settings.auth_mode.strip().lower()
        if mode not in ALGORITHM_FOR_MODE:
            raise AuthConfigError(
                f"auth_mode (AFORO_API_AUTH_MODE): {settings.auth_mode!r} is not 'hs256' or 'jwks'"
            )
        return cls(
            mode="hs256" if mode == "hs256" else "jwks",
            hs256_secret=secret or None,
            jwks_url=_blank_to_none(settings.jwks_url),
            issuer=_blank_to_none(settings.jwt_issuer),
            audience=_blank_to_none(settings.jwt_audience),
            max_token_lifetime_seconds=settings.max_token_lifetime_seconds,
        )

    @classmethod
    def from_env(cls) -> AuthConfig:
        """Read `AFORO_API_AUTH_MODE`, `AFORO_API_JWT_HS256_SECRET`, `AFORO_API_JWKS_URL`,
        `AFORO_API_JWT_ISSUER`, `AFORO_API_JWT_AUDIENCE` (each falling back to `AFORO_<NAME>`)."""
        try:
            settings = ApiSettings()
        except ValidationError as error:
            # Name the fields only: a validation message would echo the offending input values.
            fields = ", ".join(".".join(str(part) for part in item["loc"]) for item in error.errors())
            raise AuthConfigError(f"invalid API settings: {fields}") from None
        return cls.from_settings(settings)
