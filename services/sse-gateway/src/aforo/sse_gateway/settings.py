"""SseGateway settings: `AFORO_SSE_GATEWAY_*`, falling back to `AFORO_*`."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from aforo.shared.settings import ServiceSettings


class SseGatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="AFORO_SSE_GATEWAY_", extra="ignore", frozen=True)
    service_name: ClassVar[str] = "sse_gateway"

    http_port: int = Field(default=8090, ge=0, le=65535)
