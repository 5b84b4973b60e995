"""What the gateway's route handlers share: settings, the embed store, streams, history, a clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from aforo.sse_gateway.connections import ConnectionRegistry
from aforo.sse_gateway.embed_store import EmbedStore
from aforo.sse_gateway.history import HistoryStore
from aforo.sse_gateway.settings import SseGatewaySettings


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class GatewayContext:
    settings: SseGatewaySettings
    store: EmbedStore
    registry: ConnectionRegistry
    history: HistoryStore
    session_secrets: list[str] = field(repr=False)
    is_loaded: Callable[[], bool]
    clock: Callable[[], datetime] = field(default=utc_now)
    draining: bool = False

    @property
    def session_ttl(self) -> timedelta:
        return timedelta(seconds=self.settings.session_ttl_seconds)

    @property
    def session_max_lifetime(self) -> timedelta:
        return timedelta(seconds=self.settings.session_max_lifetime_seconds)

    @property
    def signing_secret(self) -> str:
        """Session JWTs are signed with the newest secret and verified with any of them."""
        return self.session_secrets[0]
