"""Keeps the definition cache current: MongoDB for a cold start, the config topic for changes.

Every trigger replica reads the whole `config.changes` topic (no consumer group), so each replica's
cache sees every create, update and delete within one poll of the API's publish (sub-second; the
design's bound is 2 s). A MongoDB resync every `definitions_resync_seconds` (default 60) bounds the
staleness even if a publish was lost after the MongoDB write. See docs/trigger-rules.md.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from aforo.shared.background import BackgroundTasks
from aforo.shared.collections import EVENT_DEFINITIONS
from aforo.shared.config_changes import ConfigChange
from aforo.shared.kafka import TopicNames, caught_up, create_consumer
from aforo.shared.logging import get_logger
from aforo.shared.mongo import MongoStore
from aforo.trigger.definitions import DefinitionCache
from aforo.trigger.metrics import BAD_CHANGES, CACHE_SIZE, CACHE_STALENESS, CHANGE_LAG
from aforo.trigger.settings import TriggerSettings

log = get_logger(__name__)


class DefinitionFeed:
    def __init__(self, settings: TriggerSettings, mongo: MongoStore, cache: DefinitionCache) -> None:
        self.settings = settings
        self.mongo = mongo
        self.cache = cache
        self.topics = TopicNames(settings.topic_prefix)
        self.consumer: AIOKafkaConsumer | None = None
        self._loops = BackgroundTasks("definition-feed")
        self._caught_up_at = time.monotonic()
        self.loaded = False
        CACHE_STALENESS.set_function(lambda: time.monotonic() - self._caught_up_at)

    async def start(self) -> None:
        self.consumer = create_consumer(
            self.settings,
            self.topics.config_changes,
            group_id=None,
            fetch_max_wait_ms=100,
            metadata_max_age_ms=5_000,
        )
        await self.consumer.start()
        await self.resync()
        self.loaded = True
        self._loops.spawn("changes", self._follow_changes())
        self._loops.spawn("resync", self._resync_periodically())

    async def stop(self) -> None:
        await self._loops.cancel_all()
        if self.consumer is not None:
            await self.consumer.stop()

    def is_alive(self) -> bool:
        return self._loops.alive()

    async def resync(self) -> None:
        """Load every CUSTOM definition with a rule from MongoDB (the source of truth)."""
        generation = self.cache.begin_snapshot()
        cursor = self.mongo.collection(EVENT_DEFINITIONS.collection).find(
            {"triggerRule": {"$ne": None}}, {"_id": 0}
        )
        documents = [document async for document in cursor]
        self.cache.apply_snapshot(documents, generation)
        CACHE_SIZE.set(self.cache.size)
        log.info("trigger_definitions_loaded", definitions=self.cache.size)

    async def _resync_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.settings.definitions_resync_seconds)
            try:
                await self.resync()
            except Exception as error:
                log.warning("trigger_definitions_resync_failed", error=repr(error))

    async def _follow_changes(self) -> None:
        """Apply config changes as they arrive. A broker outage pauses this (the staleness gauge
        grows, the MongoDB resync still bounds it); it never ends the task."""
        assert self.consumer is not None
        while True:
            try:
                batch = await self.consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    for record in records:
                        self._apply(record.value)
                CACHE_SIZE.set(self.cache.size)
                if await self._at_end():
                    self._caught_up_at = time.monotonic()
            except KafkaError as error:
                log.warning("trigger_config_changes_read_failed", error=repr(error))
                await asyncio.sleep(1.0)

    def _apply(self, raw: bytes | None) -> None:
        if raw is None:
            return  # a compaction tombstone: deletes travel as explicit DELETE changes with a version
        try:
            change = ConfigChange.from_json_bytes(raw)
        except (ValueError, ValidationError) as error:
            BAD_CHANGES.inc()
            log.warning("trigger_config_change_invalid", error=str(error)[:300])
            return
        if self.cache.apply_change(change) and change.changed_at is not None:
            CHANGE_LAG.observe(max(0.0, (datetime.now(UTC) - change.changed_at).total_seconds()))

    async def _at_end(self) -> bool:
        """Every partition's read position has reached its high-water mark."""
        assert self.consumer is not None
        return await caught_up(self.consumer)
