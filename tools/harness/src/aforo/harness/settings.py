"""Harness settings: `AFORO_HARNESS_<FIELD>`, then `AFORO_<FIELD>`, like every aforo process."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from aforo.shared.settings import ServiceSettings


class HarnessSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="AFORO_HARNESS_", extra="ignore", frozen=True)
    service_name: ClassVar[str] = "harness"

    http_port: int = Field(default=3001, ge=0, le=65535)
    api_url: str = Field(
        default="http://127.0.0.1:8089",
        description="The aforo-notify API the page talks to (a remote one too).",
    )
    public_url: str | None = Field(
        default=None,
        description="The harness as the dispatcher reaches it, for endpoint URLs; default http://127.0.0.1:<port>.",
    )
    system_events: bool = Field(
        default=True, description="Offer producing SYSTEM events to the producer topics (local stack only)."
    )
    source_topic_prefix: str = Field(default="", description="The bridge's source topic prefix.")
    routes_path: Path | None = Field(default=None, description="The bridge's routes file, if replaced.")
    slow_answer_seconds: float = Field(
        default=7.0, gt=0, description="How long a scripted 'slow' answer takes (the dispatcher waits 5 s)."
    )
    tolerance_seconds: int = Field(default=300, gt=0)

    def receiver_url(self, port: int) -> str:
        base = self.public_url or f"http://127.0.0.1:{port}"
        return f"{base.rstrip('/')}/receiver"
