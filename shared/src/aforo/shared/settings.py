"""One settings base for every service; each service subclasses it once with its own env prefix.

A field is read from `AFORO_<SERVICE>_<FIELD>` first, then from `AFORO_<FIELD>`, then its default.
So `AFORO_KAFKA_BOOTSTRAP_SERVERS` points every service at one broker, while
`AFORO_BRIDGE_HTTP_PORT` moves only the bridge.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

COMMON_ENV_PREFIX = "AFORO_"


class ConfigurationError(ValueError):
    """A service's settings cannot work: the process exits 2 with this message (`run_main`), which
    names the setting and never its value (a secret must not reach a log)."""


class ServiceSettings(BaseSettings):
    """Connection and runtime settings every process needs; subclass per service."""

    model_config = SettingsConfigDict(env_prefix=COMMON_ENV_PREFIX, extra="ignore", frozen=True)
    service_name: ClassVar[str] = "aforo"

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    topic_prefix: str = Field(default="aforo.", description="Prepended to every topic this suite owns.")
    topic_partitions: int = Field(default=3, ge=1)
    topic_replication_factor: int = Field(default=1, ge=1)
    mongo_uri: str = "mongodb://127.0.0.1:27017"
    mongo_database: str = "aforo_notify"
    log_level: str = "INFO"
    log_json: bool = True
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=0, ge=0, le=65535)
    secrets_encryption_keys: str | None = Field(
        default=None,
        repr=False,
        description="Comma-separated Fernet keys, newest first, for webhook secrets at rest (API, dispatcher).",
    )
    shutdown_grace_seconds: float = Field(default=20.0, gt=0)
    readiness_timeout_seconds: float = Field(default=2.0, gt=0)
    gc_gen0_threshold: int = Field(
        default=10_000,
        ge=0,
        description="Allocations between the garbage collector's youngest-generation runs once the service "
        "has started (Python's default is 700); 0 leaves Python's defaults. See docs/operations.md.",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Service prefix first, then the common `AFORO_` prefix as a fallback."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls.model_config.get("env_prefix") != COMMON_ENV_PREFIX:
            sources.append(EnvSettingsSource(settings_cls, env_prefix=COMMON_ENV_PREFIX))
        sources += [dotenv_settings, file_secret_settings]
        return tuple(sources)
