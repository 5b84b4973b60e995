"""Api settings: `AFORO_API_*`, falling back to `AFORO_*` (docs/api.md lists them)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from aforo.shared.settings import ServiceSettings


class ApiSettings(ServiceSettings):
    """The API's connections, auth (docs/api-auth.md) and request limits.

    `auth_mode` defaults to "jwks" so a deployment that forgets its auth settings fails at start
    (no JWKS URL) instead of quietly accepting locally signed tokens.
    """

    model_config = SettingsConfigDict(env_prefix="AFORO_API_", extra="ignore", frozen=True)
    service_name: ClassVar[str] = "api"

    http_port: int = Field(default=8089, ge=0, le=65535)

    auth_mode: str = "jwks"
    jwt_hs256_secret: SecretStr | None = None
    jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None

    rate_limit_per_second: float = Field(
        default=200.0,
        ge=0,
        description="Requests per second each tenant may make to one API process (token bucket); 0 turns it off.",
    )
    rate_limit_burst: int = Field(
        default=1_000,
        ge=1,
        description="Requests a tenant may make at once before the per-second rate applies.",
    )
    max_token_lifetime_seconds: float = Field(
        default=86_400.0,
        ge=60,
        description="A bearer token whose exp is further than this from its iat (or from now) is refused (401).",
    )

    max_request_body_bytes: int = Field(
        default=256 * 1024,
        ge=1024,
        le=900 * 1024,
        description="Larger bodies are refused with 413; the cap keeps an emitted envelope under Kafka's 1 MB.",
    )
    secret_rotation_overlap_seconds: float = Field(
        default=86_400.0,
        ge=0,
        description="How long a rotated-out webhook secret keeps signing next to the new one.",
    )
    publish_timeout_seconds: float = Field(
        default=10.0, gt=0, description="How long a request waits for the broker's acknowledgement."
    )
    outbound_allowlist: str = Field(
        default="",
        description=(
            "CIDRs (comma-separated) of non-public hosts an EMAIL provider may use plaintext SMTP with "
            "(`security: none`, local development); the dispatcher's own allowlist still decides."
        ),
    )
    recover_max_deliveries: int = Field(
        default=5_000,
        ge=1,
        description="A recovery matching more failed deliveries is refused (422): narrow it with `until`.",
    )
