"""The trigger process: a faust-streaming app run inside the common lifecycle.

faust's own worker would own signals and the event loop; here the app is started and stopped as a
service (`app.start()` / `app.stop()`) so the trigger shares /healthz, /readyz, /metrics and the
SIGTERM drain of the other processes.
"""

from __future__ import annotations

from typing import Any

import faust

from aforo.shared.connected_service import ConnectedService
from aforo.shared.kafka import ensure_topics, topic_specs
from aforo.shared.logging import get_logger
from aforo.trigger.settings import TriggerSettings

log = get_logger(__name__)


def build_faust_app(settings: TriggerSettings) -> faust.App:
    brokers = ";".join(f"kafka://{host}" for host in settings.kafka_bootstrap_servers.split(","))
    return faust.App(
        f"{settings.topic_prefix}{settings.app_id}",
        broker=brokers,
        store="memory://",
        web_enabled=False,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        producer_acks=-1,
        broker_commit_every=100,
        broker_commit_interval=1.0,
    )


class TriggerService(ConnectedService):
    name = "trigger"

    def __init__(self, settings: TriggerSettings) -> None:
        super().__init__(settings)
        self.faust_app = build_faust_app(settings)
        self.system_events = self.faust_app.topic(self.topics.system_events, value_serializer="raw")
        self.events_seen = 0
        self.faust_app.agent(self.system_events, name="evaluate-triggers")(self._evaluate)

    async def _evaluate(self, stream: Any) -> None:
        async for _raw in stream:
            self.events_seen += 1

    async def start(self) -> None:
        await ensure_topics(
            self.settings.kafka_bootstrap_servers,
            topic_specs([self.topics.system_events, self.topics.custom_events], self.settings),
        )
        await super().start()
        await self.faust_app.start()

    def is_alive(self) -> bool:
        return not self.faust_app.should_stop

    async def drain(self) -> None:
        await self.faust_app.stop()
