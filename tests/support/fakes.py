"""In-memory stand-ins for the dispatcher's I/O edges (`aforo.dispatcher.ports`), so the orchestration
(`Dispatcher.dispatch_event`, `run_attempt`) is tested fast, without a broker or a database.

They keep what a test asserts on (rows, parked records, dead letters, sends) in plain lists. The
real-broker integration tests stay: these add fast tests of the orchestration, they do not replace
the adapters' own tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from aforo.dispatcher.consequences import Consequences
from aforo.dispatcher.delivery_log import AttemptKey, DeliveryLogRow
from aforo.dispatcher.dispatch import Dispatcher
from aforo.dispatcher.ports import LatestAttempt, Sent, Unusable
from aforo.dispatcher.preferences import (
    CooldownClaim,
    EventDefinitionView,
    PreferenceView,
    custom_event_definition,
    system_event_definition,
)
from aforo.dispatcher.retry_schedule import RetryConfig, RetryRecordHeaders
from aforo.dispatcher.selection import EndpointView
from aforo.dispatcher.settings import DispatcherSettings
from aforo.shared.delivery import Channel
from aforo.shared.envelope import EventEnvelope
from aforo.shared.kafka import TopicNames
from tests.support.envelopes import make_envelope


@dataclass
class FakeConfiguration:
    """Definitions from the catalog (plus any CUSTOM ones added), preferences and endpoints in dicts."""

    custom: dict[tuple[str, str], EventDefinitionView] = field(default_factory=dict)
    preferences: dict[tuple[str, str, str], PreferenceView] = field(default_factory=dict)
    endpoint_views: list[EndpointView] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)

    def add_custom(self, tenant_id: str, event_type: str, channels: frozenset[Channel]) -> None:
        self.custom[(tenant_id, event_type)] = custom_event_definition(event_type, channels)

    async def definition(self, tenant_id: str, event_type: str) -> EventDefinitionView | None:
        return system_event_definition(event_type) or self.custom.get((tenant_id, event_type))

    async def preference(self, tenant_id: str, customer_id: str, event_type: str) -> PreferenceView | None:
        return self.preferences.get((tenant_id, customer_id, event_type))

    async def endpoints(self, tenant_id: str, customer_id: str) -> list[EndpointView]:
        return [
            e for e in self.endpoint_views if (e.tenant_id, e.end_customer_id) == (tenant_id, customer_id)
        ]

    async def disable_endpoint(
        self, tenant_id: str, endpoint_id: str, reason: str, now: datetime
    ) -> dict[str, Any] | None:
        self.disabled.append(endpoint_id)
        return {"endpointId": endpoint_id, "tenantId": tenant_id, "active": False, "version": 2}


@dataclass
class FakeCooldowns:
    taken: set[tuple[str, str, str]] = field(default_factory=set)

    async def claim(self, claim: CooldownClaim) -> bool:
        slot = (claim.tenant_id, claim.customer_id, claim.event_type)
        if slot in self.taken:
            return False
        self.taken.add(slot)
        return True


@dataclass
class FakeLogSink:
    """The rows in order, and the state updates; `flushed` says which rows the ledger can see."""

    rows: list[DeliveryLogRow] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    state_updates: list[Any] = field(default_factory=list)
    keys: set[AttemptKey] = field(default_factory=set)

    def add(self, row: DeliveryLogRow, body: bytes) -> None:
        self.rows.append(row)
        self.bodies.append(body)
        self.keys.add(row.key)

    def holds(self, key: AttemptKey) -> bool:
        return False  # everything added counts as flushed: the ledger answers for it

    def add_state_update(self, update: Any) -> None:
        self.state_updates.append(update)


@dataclass
class FakeLedger:
    """Answers from the rows the sink received (as the database would once they are flushed)."""

    sink: FakeLogSink
    reserved: list[AttemptKey] = field(default_factory=list)
    asked: list[AttemptKey] = field(default_factory=list)
    """Every attempt `recorded` was asked about (the idempotency lookups the hot path made)."""
    answer_after: asyncio.Event | None = None
    """When set, `recorded` answers only once this is set (a slow database)."""

    async def recorded(self, key: AttemptKey) -> bool:
        self.asked.append(key)
        if self.answer_after is not None:
            await self.answer_after.wait()
        return key in self.sink.keys or key in self.reserved

    async def status(self, key: AttemptKey) -> str | None:
        for row in reversed(self.sink.rows):
            if row.key == key:
                return row.status.value
        return "PENDING" if key in self.reserved else None

    async def reserve(
        self, key: AttemptKey, row: DeliveryLogRow, body: bytes, stale_before: datetime
    ) -> bool:
        if await self.recorded(key):
            return False
        self.reserved.append(key)
        return True

    async def latest(
        self, tenant_id: str, event_id: str, channel: Channel, destination_id: str
    ) -> LatestAttempt | None:
        rows = [
            row
            for row in self.sink.rows
            if (row.tenant_id, row.event_id, row.channel, row.endpoint_id)
            == (tenant_id, event_id, channel, destination_id)
            and row.attempt > 0
        ]
        if not rows:
            return None
        newest = max(rows, key=lambda row: row.attempt)
        return LatestAttempt(newest.attempt, newest.status.value, newest.created_at)


@dataclass
class ProducedRecord:
    topic: str
    value: bytes | None
    key: bytes | None
    headers: list[tuple[str, bytes]]

    def header(self, name: str) -> str | None:
        for header, value in self.headers:
            if header == name:
                return value.decode()
        return None


@dataclass
class FakeProducer:
    """Keeps every record 'sent'; `fail_next` makes the next sends raise, as a broker outage would."""

    records: list[ProducedRecord] = field(default_factory=list)
    fail_next: int = 0

    async def send_and_wait(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> Any:
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("broker unavailable")
        self.records.append(ProducedRecord(topic, value, key, list(headers or ())))
        return None

    def on(self, topic: str) -> list[ProducedRecord]:
        return [record for record in self.records if record.topic == topic]


@dataclass
class ScriptedSender:
    """A channel sender that answers from a script of statuses (then `default`), counting sends."""

    channel: Channel = Channel.WEBHOOK
    statuses: list[int | str] = field(default_factory=list)
    default: int = 200
    retry_config: RetryConfig = field(default_factory=lambda: RetryConfig(3, 2.0, 2.0))
    sends: list[tuple[str, str, int]] = field(default_factory=list)
    gate: asyncio.Event | None = None

    async def send(
        self, envelope: EventEnvelope, body: bytes, destination_id: str, attempt: int
    ) -> Sent | Unusable:
        self.sends.append((envelope.event_id, destination_id, attempt))
        if self.gate is not None:
            await self.gate.wait()
        answer = self.statuses.pop(0) if self.statuses else self.default
        if isinstance(answer, str):
            return Unusable(answer)
        return Sent(
            status=answer,
            error=None if 200 <= answer < 300 else f"HTTP {answer}",
            response_body=b"",
            duration_ms=1.0,
            retry_after=None,
            retry_config=self.retry_config,
        )


@dataclass
class DispatcherWorld:
    """A `Dispatcher` wired to fakes, and the fakes, for a test to drive and inspect."""

    dispatcher: Dispatcher
    config: FakeConfiguration
    sink: FakeLogSink
    ledger: FakeLedger
    producer: FakeProducer
    sender: ScriptedSender
    topics: TopicNames

    def parked(self) -> list[RetryRecordHeaders]:
        return [
            RetryRecordHeaders.from_kafka(record.headers)
            for record in self.producer.records
            if ".dispatch.retry." in record.topic
        ]


def dispatcher_world(**settings: Any) -> DispatcherWorld:
    config = FakeConfiguration()
    sink = FakeLogSink()
    ledger = FakeLedger(sink)
    producer = FakeProducer()
    sender = ScriptedSender()
    topics = TopicNames("test.")
    dispatcher = Dispatcher(
        settings=DispatcherSettings(topic_prefix="test.", **settings),
        config=config,
        cooldowns=FakeCooldowns(),
        ledger=ledger,
        log_sink=sink,
        consequences=Consequences(producer, config, topics),
        senders={Channel.WEBHOOK: sender},
    )
    return DispatcherWorld(dispatcher, config, sink, ledger, producer, sender, topics)


DispatcherT = TypeVar("DispatcherT", bound=Dispatcher)


def dispatcher_of(cls: type[DispatcherT], world: DispatcherWorld) -> DispatcherT:
    """A `Dispatcher` subclass (a test's own `dispatch_event`) made of a world's fakes."""
    parts = ("settings", "config", "cooldowns", "ledger", "log_sink", "consequences", "senders")
    return cls(**{name: getattr(world.dispatcher, name) for name in parts})


@dataclass
class FetchedRecord:
    """What a consumer loop reads of an aiokafka `ConsumerRecord`, for fake Kafka consumers."""

    topic: str
    partition: int
    offset: int
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()
    key: bytes | None = None


class NoFlush:
    """A log writer with nothing to write: for consumer loops whose dispatcher logs nothing."""

    async def flush(self) -> None: ...


def endpoint_view(
    endpoint_id: str, *, tenant: str = "t1", customer: str = "c1", **fields: Any
) -> EndpointView:
    return EndpointView(
        endpoint_id=endpoint_id,
        tenant_id=tenant,
        end_customer_id=customer,
        url=f"https://{endpoint_id}.example/hook",
        events=frozenset(fields.pop("events", ["*"])),
        active=fields.pop("active", True),
        **fields,
    )


def invoice_envelope(event_id: str = "evt-1", *, tenant: str = "t1", customer: str = "c1") -> EventEnvelope:
    return make_envelope(
        event_id=event_id,
        tenant=tenant,
        customer=customer,
        payload={"tenantId": tenant, "customerId": customer, "amountDue": 100},
    )
