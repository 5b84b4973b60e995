"""The trigger process: a faust-streaming agent over the SYSTEM-event topic, in the common lifecycle.

faust's own worker would own signals and the event loop; here the faust app is started and stopped
as a service (`app.start()` / `app.stop()`), so the trigger shares /healthz, /readyz, /metrics and
the SIGTERM drain of the other processes. Per event the agent looks up the tenant's armed CUSTOM
definitions in an in-memory cache (never MongoDB), evaluates their compiled rules and publishes every
match to the CUSTOM-event topic, awaiting the broker's ack before faust may commit the source offset.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import faust
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from aforo.shared.config_changes import CONFIG_TOPIC_SETTINGS
from aforo.shared.connected_service import ConnectedService
from aforo.shared.dead_letters import DeadLetterHeaders
from aforo.shared.envelope import EventEnvelope
from aforo.shared.kafka import ensure_topics, renew_producer, topic_specs
from aforo.shared.logging import bind_event_context, get_logger
from aforo.trigger.definition_feed import DefinitionFeed
from aforo.trigger.definitions import DefinitionCache
from aforo.trigger.derivation import derive_custom_events
from aforo.trigger.metrics import (
    DEAD_LETTERED,
    EVALUATION_SECONDS,
    EVENTS_SEEN,
    MATCHES,
    PUBLISH_FAILURES,
    RULES_EVALUATED,
)
from aforo.trigger.settings import TriggerSettings

log = get_logger(__name__)


PUBLISH_RETRY_BACKOFF_SECONDS = (0.5, 1.0, 2.0, 5.0)

_Record = tuple[str, bytes, bytes | None, list[tuple[str, bytes]]]
"""topic, value, key, headers"""


def build_faust_app(settings: TriggerSettings) -> faust.App:
    brokers = ";".join(f"kafka://{host}" for host in settings.kafka_bootstrap_servers.split(","))
    return faust.App(
        f"{settings.topic_prefix}{settings.app_id}",
        broker=brokers,
        store="memory://",
        datadir=settings.data_dir,
        web_enabled=False,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        producer_acks=-1,
        broker_commit_every=100,
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
        # faust's default 60 s session: after a SIGKILL the restarted trigger waited a minute for the
        # dead member to leave the group before deriving anything. 10 s, as every other consumer here.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=3.0,
    )


class TriggerService(ConnectedService):
    name = "trigger"

    def __init__(self, settings: TriggerSettings) -> None:
        super().__init__(settings)
        self.trigger_settings = settings
        self.cache = DefinitionCache()
        self.feed = DefinitionFeed(settings, self.mongo, self.cache)
        self.faust_app = build_faust_app(settings)
        self.system_events = self.faust_app.topic(self.topics.system_events, value_serializer="raw")
        self.faust_app.agent(self.system_events, name="evaluate-triggers", concurrency=1)(self._evaluate)

    async def _evaluate(self, stream: Any) -> None:
        async for raw in stream:
            await self.handle_system_event(raw)

    async def handle_system_event(self, raw: bytes) -> int:
        """Evaluate one SYSTEM event; returns how many CUSTOM events it derived."""
        try:
            source = EventEnvelope.from_json_bytes(raw)
        except (ValueError, ValidationError) as error:
            await self._dead_letter(raw, "invalid_envelope", str(error))
            return 0
        EVENTS_SEEN.labels(source.event_type).inc()
        armed = self.cache.armed_by(source.tenant_id, source.event_type)
        if not armed:
            return 0
        began = time.perf_counter()
        derived = derive_custom_events(source, armed)
        EVALUATION_SECONDS.observe(time.perf_counter() - began)
        RULES_EVALUATED.inc(len(armed))
        with bind_event_context(tenant_id=source.tenant_id, event_id=source.event_id):
            # The source offset may be committed only once the derived events are durable.
            await self._publish_durably(
                [
                    (
                        self.topics.custom_events,
                        envelope.to_json_bytes(),
                        envelope.partition_key,
                        envelope.kafka_headers(),
                    )
                    for envelope in derived
                ]
            )
            if derived:
                MATCHES.labels(source.event_type).inc(len(derived))
                log.info("custom_events_derived", event_types=[envelope.event_type for envelope in derived])
        return len(derived)

    async def _publish_durably(self, records: list[_Record]) -> None:
        """Send every record and wait for the broker's acks; on a refusal, send them all again.

        The agent must not fail here: faust acknowledges the event in hand when an agent crashes, so
        its derived events would be lost. During a broker outage the agent waits (its source offset
        stays uncommitted); a producer that aiokafka cannot recover is replaced (`renew_producer`).
        Re-sent records keep their eventIds, so the dispatcher delivers each once.
        """
        attempt = 0
        while True:
            try:
                futures = [
                    await self.producer.send(topic, value=value, key=key, headers=headers)
                    for topic, value, key, headers in records
                ]
                for future in futures:
                    await future
                return
            except KafkaError as error:
                PUBLISH_FAILURES.inc()
                log.warning("trigger_publish_failed", error=repr(error), attempt=attempt + 1)
                self._producer = await renew_producer(self._producer, self.settings)
                await asyncio.sleep(
                    PUBLISH_RETRY_BACKOFF_SECONDS[min(attempt, len(PUBLISH_RETRY_BACKOFF_SECONDS) - 1)]
                )
                attempt += 1

    async def _dead_letter(self, raw: bytes, reason: str, detail: str) -> None:
        DEAD_LETTERED.labels(reason).inc()
        log.warning("trigger_dead_letter", reason=reason, detail=detail[:300])
        headers = DeadLetterHeaders(reason, detail).to_kafka()
        await self._publish_durably([(self.topics.trigger_dead_letter, raw, None, headers)])

    async def start(self) -> None:
        await ensure_topics(
            self.settings.kafka_bootstrap_servers,
            topic_specs(
                [self.topics.system_events, self.topics.custom_events, self.topics.trigger_dead_letter],
                self.settings,
            )
            + topic_specs([self.topics.config_changes], self.settings, **CONFIG_TOPIC_SETTINGS),
        )
        await super().start()
        await self.feed.start()
        await self.faust_app.start()

    async def readiness_checks(self) -> dict[str, bool]:
        checks = await super().readiness_checks()
        checks["definitions"] = self.feed.loaded
        return checks

    def is_alive(self) -> bool:
        return not self.faust_app.should_stop and (not self.feed.loaded or self.feed.is_alive())

    async def drain(self) -> None:
        """Stop the agent: faust finishes the event in hand and commits what was processed."""
        await self.faust_app.stop()

    async def stop(self) -> None:
        await self.feed.stop()
        await super().stop()
