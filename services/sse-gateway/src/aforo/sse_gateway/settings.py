"""SSE gateway settings: `AFORO_SSE_GATEWAY_*`, falling back to `AFORO_*` (docs/sse.md lists them)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from aforo.shared.settings import ServiceSettings


class SseGatewaySettings(ServiceSettings):
    """Streams, history, caps, embed sessions.

    `session_secret` has no default: session JWTs signed with a guessable key would let anyone read
    any customer's stream, so the process refuses to start without one (`SseGatewayConfigError`).
    """

    model_config = SettingsConfigDict(env_prefix="AFORO_SSE_GATEWAY_", extra="ignore", frozen=True)
    service_name: ClassVar[str] = "sse_gateway"

    http_port: int = Field(default=8090, ge=0, le=65535)

    session_secret: SecretStr | None = Field(
        default=None, description="HS256 key of session JWTs, at least 32 bytes; the same on every replica."
    )
    session_ttl_seconds: float = Field(default=900.0, ge=10, le=3600, description="A session JWT's lifetime.")
    session_max_lifetime_seconds: float = Field(
        default=12 * 3600.0,
        ge=60,
        description="Refreshes stop here; the SDK then exchanges a new bridge token.",
    )
    session_sweep_seconds: float = Field(
        default=15.0, gt=0, description="How often open streams are checked for revoked sessions and keys."
    )
    embed_key_cache_seconds: float = Field(
        default=5.0, ge=0, description="How long an embed key's allowed origins are cached per replica."
    )
    session_exchange_rate_per_second: float = Field(
        default=10.0,
        ge=0,
        description="Session exchanges per second one client address may make (token bucket); 0 turns it off.",
    )
    session_exchange_burst: int = Field(
        default=100,
        ge=1,
        description="Session exchanges a client address may make at once (a NAT, an office).",
    )
    client_address_header: str | None = Field(
        default=None,
        description="Behind a proxy: the header carrying the client's address (e.g. X-Forwarded-For, its "
        "last entry is used). Unset: the TCP peer's address.",
    )
    token_leeway_seconds: int = Field(default=30, ge=0, le=120)

    heartbeat_seconds: float = Field(
        default=15.0, gt=0, description="A comment line on idle streams, under proxies' idle timeouts."
    )
    connection_queue_frames: int = Field(
        default=256, ge=1, description="Frames a stream may have waiting; one more disconnects it as slow."
    )
    connection_queue_bytes: int = Field(
        default=1024 * 1024,
        ge=64 * 1024,
        description="Bytes of frames a stream may have waiting; more disconnects it as slow.",
    )
    max_connections: int = Field(default=20_000, ge=1, description="Open streams per process.")
    max_connections_per_stream: int = Field(
        default=10, ge=1, description="Open streams per (tenant, customer) per process: tabs and widgets."
    )

    history_window_seconds: float = Field(
        default=300.0, ge=0, description="Events this recent can be replayed with Last-Event-ID."
    )
    history_per_stream: int = Field(default=100, ge=0, description="Events kept per (tenant, customer).")
    history_max_events: int = Field(
        default=200_000, ge=0, description="Events kept in all; the least recently active streams go first."
    )
    consumer_fetch_max_wait_ms: int = Field(default=100, ge=1, le=5_000)
