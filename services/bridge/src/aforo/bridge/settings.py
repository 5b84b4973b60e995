"""Bridge settings: `AFORO_BRIDGE_*`, falling back to `AFORO_*`."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from aforo.shared.settings import ServiceSettings


class BridgeSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="AFORO_BRIDGE_", extra="ignore", frozen=True)
    service_name: ClassVar[str] = "bridge"

    http_port: int = Field(default=9101, ge=0, le=65535)
    consumer_group: str = "aforo-bridge"
    routes_path: Path | None = Field(
        default=None, description="A TOML file replacing the shipped producer-topic mapping."
    )
    source_topic_prefix: str = Field(
        default="", description="Prepended to every producer topic of the mapping (test isolation)."
    )
    source_topic_pattern: str = Field(
        default=r"(billing|pricing|usage|analytics|organization)\..+",
        description="Producer topics to watch besides the mapped ones; an unmapped match is dead-lettered.",
    )
    max_record_bytes: int = Field(default=512 * 1024, gt=0)
    batch_max_records: int = Field(default=500, gt=0)
    poll_timeout_ms: int = Field(default=200, gt=0)
    metadata_max_age_ms: int = Field(default=5_000, gt=0)
