"""Follows `<prefix>config.changes` so the dispatcher's configuration caches may keep answers long.

Without it every cached answer (a customer's endpoints, a preference, an endpoint's secrets) is
reread from MongoDB once `config_cache_seconds` (1 s) have passed: about one query a second per
active key, on the delivery path. The API publishes a `ConfigChange` after each configuration write;
every dispatcher replica reads the whole topic (no consumer group) from its end at start, and a
change for a tenant drops every answer about that tenant from the caches that follow the feed.

While the feed is *current* (it has read every partition to its end, with a fetch response
newer than `current_within` seconds) the caches keep an answer for `config_feed_cache_seconds`
(60 s by default), if it was loaded after the feed first became current. Otherwise, on a broker
outage or a feed that falls behind, the 1 s expiry applies again, so a change still reaches
deliveries within the 2 s the design asks for. The long expiry bounds what a change the API wrote
to MongoDB but never published (it crashed in between) can leave stale. See docs/dispatch.md.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from aforo.dispatcher.metrics import CONFIG_CHANGES_INVALID, CONFIG_FEED_STALENESS
from aforo.shared.background import BackgroundTasks
from aforo.shared.config_changes import ConfigChange
from aforo.shared.logging import get_logger
from aforo.shared.ttl_cache import Key, TtlCache

log = get_logger(__name__)

POLL_MS = 200


def read_to_end(
    positions: Mapping[TopicPartition, int],
    highwaters: Mapping[TopicPartition, int | None],
    fetched_at_ms: Mapping[TopicPartition, int | None],
    now_ms: int,
    current_within: float,
) -> bool:
    """Whether a consumer has read every partition to its end, by fetch responses newer than
    `current_within` seconds (a broker that stopped answering leaves old high-water marks). Pure."""
    if not positions:
        return False
    for partition, position in positions.items():
        highwater, fetched_at = highwaters.get(partition), fetched_at_ms.get(partition)
        if highwater is None or fetched_at is None or position < highwater:
            return False
        if now_ms - fetched_at > current_within * 1000:
            return False
    return True


def tenant_of(raw: bytes | None) -> str | None:
    """The tenant a config-topic record changes; raises ValueError (or pydantic's) if it does not
    parse. None for a compaction tombstone (a delete travels as a DELETE change before it)."""
    if raw is None:
        return None
    return ConfigChange.from_json_bytes(raw).tenant_id


class ConfigFeed:
    """Drops what each configuration change makes stale from the caches that follow it."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        current_within: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.consumer = consumer
        self._current_within = current_within
        self._clock = clock
        self._caches: list[TtlCache] = []
        self._confirmed_at: float | None = None
        """When the feed last found itself read to the end (of `clock`)."""
        self._current_since: float | None = None
        """When it first did: answers loaded earlier may predate a change it never saw."""
        self._loops = BackgroundTasks("config-feed")
        CONFIG_FEED_STALENESS.set_function(self._staleness)

    def keep(self, cache: TtlCache, ttl: float) -> None:
        """Let `cache` keep answers for `ttl` seconds while the feed vouches for them."""
        cache.trust_while(self.vouches_for, ttl)
        self._caches.append(cache)

    def vouches_for(self, loaded_at: float) -> bool:
        """Whether an answer loaded at `loaded_at` (of `clock`) is still good until a change drops it."""
        return (
            self._current_since is not None
            and loaded_at >= self._current_since
            and self._confirmed_at is not None
            and self._clock() - self._confirmed_at <= self._current_within
        )

    async def start(self) -> None:
        await self.consumer.start()
        self._loops.spawn("changes", self._follow())

    async def stop(self) -> None:
        await self._loops.cancel_all()
        await self.consumer.stop()

    def is_alive(self) -> bool:
        return self._loops.alive()

    def forget_tenant(self, tenant_id: str | None) -> None:
        """Drop every cached answer about `tenant_id` (None: about everyone)."""

        def stale(key: Key) -> bool:
            return tenant_id is None or (len(key) > 1 and key[1] == tenant_id)

        for cache in self._caches:
            cache.drop_where(stale)

    def apply(self, raw: bytes | None) -> None:
        """One config-topic record. A record that does not parse drops everything: which tenant it
        changed is unknown, and a cold cache only costs a few reads."""
        try:
            tenant_id = tenant_of(raw)
        except (ValueError, ValidationError) as error:
            CONFIG_CHANGES_INVALID.inc()
            log.warning("dispatcher_config_change_invalid", error=str(error)[:300])
            self.forget_tenant(None)
            return
        if tenant_id is not None:
            self.forget_tenant(tenant_id)

    async def _follow(self) -> None:
        """Apply changes as they arrive; a broker outage pauses this (the caches fall back to their
        own expiry meanwhile), it never ends the task."""
        while True:
            try:
                batch = await self.consumer.getmany(timeout_ms=POLL_MS)
                for records in batch.values():
                    for record in records:
                        self.apply(record.value)
                await self._confirm()
            except KafkaError as error:
                log.warning("dispatcher_config_changes_read_failed", error=repr(error))
                await asyncio.sleep(1.0)

    async def _confirm(self) -> None:
        consumer = self.consumer
        assignment = consumer.assignment()
        positions = {partition: await consumer.position(partition) for partition in assignment}
        fetched: dict[TopicPartition, Any] = {p: consumer.last_poll_timestamp(p) for p in assignment}
        highwaters = {partition: consumer.highwater(partition) for partition in assignment}
        if read_to_end(positions, highwaters, fetched, int(time.time() * 1000), self._current_within):
            self._confirmed_at = self._clock()
            if self._current_since is None:
                self._current_since = self._confirmed_at
                log.info("dispatcher_config_feed_current")

    def _staleness(self) -> float:
        return float("inf") if self._confirmed_at is None else self._clock() - self._confirmed_at
