"""Dispatcher settings: `AFORO_DISPATCHER_*`, falling back to `AFORO_*`."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from aforo.shared.settings import ServiceSettings


class DispatcherSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="AFORO_DISPATCHER_", extra="ignore", frozen=True)
    service_name: ClassVar[str] = "dispatcher"

    http_port: int = Field(default=9103, ge=0, le=65535)
