"""Api settings: `AFORO_API_*`, falling back to `AFORO_*`."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from aforo.shared.settings import ServiceSettings


class ApiSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="AFORO_API_", extra="ignore", frozen=True)
    service_name: ClassVar[str] = "api"

    http_port: int = Field(default=8089, ge=0, le=65535)
