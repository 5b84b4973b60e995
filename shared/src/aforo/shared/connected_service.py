"""A service base holding the two connections most processes need: a Kafka producer and MongoDB.

Readiness is both answering. Services with consumers or HTTP routes extend start/drain/stop.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiokafka import AIOKafkaProducer

from aforo.shared.kafka import TopicNames, create_producer, kafka_answers
from aforo.shared.lifecycle import Service
from aforo.shared.mongo import CollectionIndexes, MongoStore
from aforo.shared.settings import ServiceSettings


class ConnectedService(Service):
    def __init__(self, settings: ServiceSettings, collections: Sequence[CollectionIndexes] = ()) -> None:
        self.settings = settings
        self.topics = TopicNames(settings.topic_prefix)
        self.collections = tuple(collections)
        self.mongo = MongoStore(settings.mongo_uri, settings.mongo_database, app_name=f"aforo-{self.name}")
        self._producer: AIOKafkaProducer | None = None

    @property
    def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError(f"{self.name}: producer used before start()")
        return self._producer

    async def start(self) -> None:
        await self.mongo.start(self.collections)
        self._producer = create_producer(self.settings)
        await self._producer.start()

    async def readiness_checks(self) -> dict[str, bool]:
        timeout = self.settings.readiness_timeout_seconds
        kafka_ok = self._producer is not None and await kafka_answers(self._producer, timeout)
        return {"kafka": kafka_ok, "mongodb": await self.mongo.answers(timeout)}

    async def drain(self) -> None:
        """Nothing in flight by default; services with consumers override this."""

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
        await self.mongo.close()
