"""Trigger settings: `AFORO_TRIGGER_*`, falling back to `AFORO_*`."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from aforo.shared.settings import ServiceSettings


class TriggerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="AFORO_TRIGGER_", extra="ignore", frozen=True)
    service_name: ClassVar[str] = "trigger"

    http_port: int = Field(default=9102, ge=0, le=65535)
    app_id: str = Field(default="aforo-trigger", description="faust app id: consumer group and table prefix.")
    data_dir: str = Field(
        default=".local/trigger-data",
        description="faust's data directory (it keeps no state the trigger needs: memory store); in a "
        "container with a read-only root filesystem, a path under the /tmp emptyDir.",
    )
    definitions_resync_seconds: float = Field(
        default=60.0,
        gt=0,
        description="MongoDB resync period: the staleness bound if a change publish is lost.",
    )
