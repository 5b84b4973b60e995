"""The dispatcher's I/O edges as small interfaces, so the orchestration (`dispatch`) runs against
MongoDB, Kafka and the network in production and against in-memory fakes in unit tests
(`tests/support/fakes.py`). Each protocol is what `Dispatcher` needs of one collaborator, no more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from aforo.dispatcher.channels.planning import ChannelPlan
from aforo.dispatcher.delivery_log import AttemptKey, ChannelFacts, DeliveryLogRow, Outcome
from aforo.dispatcher.preferences import CooldownClaim, EventDefinitionView, PreferenceView
from aforo.dispatcher.retry_schedule import RetryConfig
from aforo.dispatcher.selection import EndpointView
from aforo.shared.delivery import Channel
from aforo.shared.envelope import EventEnvelope

KafkaHeaders = Sequence[tuple[str, bytes]]

__all__ = [
    "AttemptKey",
    "AttemptLedger",
    "ChannelPlanner",
    "ConfigurationSource",
    "CooldownClaims",
    "LatestAttempt",
    "LogSink",
    "RecordProducer",
    "Sender",
    "Sent",
    "Unusable",
]


@dataclass(frozen=True, slots=True)
class LatestAttempt:
    """The newest attempt recorded for a delivery: what a replay continues from."""

    attempt: int
    status: str
    created_at: datetime


class ConfigurationSource(Protocol):
    """Definitions, preferences and endpoints as the API stored them (cached by the adapter)."""

    async def definition(self, tenant_id: str, event_type: str) -> EventDefinitionView | None: ...

    async def preference(
        self, tenant_id: str, customer_id: str, event_type: str
    ) -> PreferenceView | None: ...

    async def endpoints(self, tenant_id: str, customer_id: str) -> list[EndpointView]: ...

    async def disable_endpoint(
        self, tenant_id: str, endpoint_id: str, reason: str, now: datetime
    ) -> dict[str, Any] | None: ...


class CooldownClaims(Protocol):
    async def claim(self, claim: CooldownClaim) -> bool:
        """Atomically take the cooldown slot; False when another event (or replica) holds it."""
        ...


class AttemptLedger(Protocol):
    """Which attempts already happened, read from the delivery log itself (one row per attempt)."""

    async def recorded(self, key: AttemptKey) -> bool:
        """Whether a row for this attempt is stored (any status): then it is not sent again."""
        ...

    async def status(self, key: AttemptKey) -> str | None:
        """The stored row's status of this attempt, or None when it has no row."""
        ...

    async def reserve(
        self, key: AttemptKey, row: DeliveryLogRow, body: bytes, stale_before: datetime
    ) -> bool:
        """Store a PENDING row for the attempt unless one exists (one not older than `stale_before`):
        the claim of the rare paths two replicas could run at once (replays, the reconciler)."""
        ...

    async def latest(
        self, tenant_id: str, event_id: str, channel: Channel, destination_id: str
    ) -> LatestAttempt | None: ...


class LogSink(Protocol):
    """Where rows (and the state of retried deliveries) go, written in batches beside the hot path."""

    def add(self, row: DeliveryLogRow, body: bytes) -> None: ...

    def holds(self, key: AttemptKey) -> bool:
        """Whether an unflushed row for this attempt is buffered."""
        ...

    def add_state_update(self, update: Any) -> None: ...


class RecordProducer(Protocol):
    async def send_and_wait(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: KafkaHeaders | None = None,
    ) -> Any: ...


class ChannelPlanner(Protocol):
    """EMAIL/SMS/PAGERDUTY: which contact destinations an event reaches (docs/channels.md)."""

    async def plan(self, envelope: EventEnvelope, chosen: frozenset[Channel]) -> ChannelPlan: ...


@dataclass(frozen=True, slots=True)
class Unusable:
    """The destination cannot take this attempt (deleted, deactivated, no secret): FAILED, no retry."""

    reason: str
    facts: ChannelFacts | None = None


@dataclass(frozen=True, slots=True)
class Sent:
    """What one attempt came to, and the retry policy of the destination it went to."""

    status: int | None
    error: str | None
    response_body: bytes | None
    duration_ms: float
    retry_after: str | None
    retry_config: RetryConfig
    refused: bool = False
    detail: str | None = None
    outcome: Outcome | None = None
    """A channel sender's own reading of its provider's answer (an SMTP 550 is REJECTED, not an HTTP
    status); None: judged from `status` and `error` as a webhook's."""
    retry_after_seconds: float | None = None
    """A channel sender's wait before the next attempt (PagerDuty's 429: at least 30 s); None: from
    `retry_after` as for webhooks."""
    facts: ChannelFacts | None = None


class Sender(Protocol):
    """Sends one attempt on one channel; never raises for a destination's or the network's failure."""

    channel: Channel

    async def send(
        self, envelope: EventEnvelope, body: bytes, destination_id: str, attempt: int
    ) -> Sent | Unusable: ...
