"""Follows `<prefix>config.changes` so the dispatcher's configuration caches may keep answers long.

Without it every cached answer (a customer's endpoints, a preference, an endpoint's secrets) is
reread from MongoDB once `config_cache_seconds` (1 s) have passed: about one query a second per
active key, on the delivery path. The API publishes a `ConfigChange` after each configuration write;
every dispatcher replica reads the whole topic (no consumer group) from its end at start, and a
change for a tenant drops every answer about that tenant from the caches that follow the feed.

While the feed is *current* (every partition read to its end, by fetch responses at most
`CURRENT_WITHIN_SECONDS` (1.8 s) old, without a break) the caches keep an answer for
`config_feed_cache_seconds` (60 s by default) if its load began after the current run of the feed
began. A break (no confirmation for longer than that: a broker outage, a starved event
loop) ends the run: what was loaded before it is not vouched for again, since a change published
meanwhile may be lost (the API logs `config_change_unpublished` and keeps its write). A partition
assigned or unassigned, or a position that moved without the records in between being read, drops
every answer and starts a new run. Otherwise the 1 s expiry applies, so a change still reaches
deliveries within the 2 s the design asks for; the long expiry bounds what a change written to
MongoDB but never published can leave stale. See docs/dispatch.md.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping

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

CURRENT_WITHIN_SECONDS = 1.8
"""How recent the fetch responses that found the topic read to its end must be for the feed to vouch
for answers: a change published after them is applied at the next fetch, or (the broker gone) the
answers stop being vouched for this long after it, inside the 2 s in which a change the API writes
must reach deliveries. Shorter makes a busy dispatcher (whose fetch responses wait on its event loop)
fall back to rereading MongoDB every second."""


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


def tenant_key_group(key: Key) -> str:
    """The tenant of a configuration cache's key: every key the dispatcher caches is
    `(kind, tenant_id, ...)`."""
    return key[1]


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
        current_within: float = CURRENT_WITHIN_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.consumer = consumer
        self._current_within = current_within
        self._clock = clock
        self._caches: list[TtlCache] = []
        self._confirmed_at: float | None = None
        """As of when the feed last found itself read to the end (of `clock`): its oldest fetch."""
        self._current_since: float | None = None
        """When the current run began: answers loaded earlier may predate a change it never saw."""
        self._expected: dict[TopicPartition, int] | None = None
        """Each partition's position once the records of the last poll are applied."""
        self._loops = BackgroundTasks("config-feed")
        CONFIG_FEED_STALENESS.set_function(self._staleness)

    def keep(self, cache: TtlCache, ttl: float) -> None:
        """Let `cache` keep answers for `ttl` seconds while the feed vouches for them."""
        cache.trust_while(self.vouches_for, ttl, tenant_key_group)
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

    async def wait_current(self, timeout_seconds: float) -> bool:
        """Wait (at most `timeout_seconds`) until the feed is current, so that the first answers the
        consumers load are vouched for; False if it is not by then (answers expire after 1 s until it is)."""
        deadline = self._clock() + timeout_seconds
        while self._current_since is None:
            if self._clock() >= deadline:
                log.warning("dispatcher_config_feed_not_current", waited_seconds=timeout_seconds)
                return False
            await asyncio.sleep(POLL_MS / 4000)
        return True

    async def stop(self) -> None:
        await self._loops.cancel_all()
        await self.consumer.stop()

    def is_alive(self) -> bool:
        return self._loops.alive()

    def forget_tenant(self, tenant_id: str | None) -> None:
        """Drop every cached answer about `tenant_id` (None: about everyone)."""
        for cache in self._caches:
            if tenant_id is None:
                cache.clear()
            else:
                cache.drop_group(tenant_id)

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
                read_up_to = dict(self._expected or {})
                for partition, records in batch.items():
                    for record in records:
                        self.apply(record.value)
                    if records:
                        read_up_to[partition] = records[-1].offset + 1
                await self._confirm(read_up_to)
            except KafkaError as error:
                log.warning("dispatcher_config_changes_read_failed", error=repr(error))
                await asyncio.sleep(1.0)

    async def _confirm(self, read_up_to: dict[TopicPartition, int]) -> None:
        """After a poll: is the feed still unbroken, and read to the end?"""
        consumer = self.consumer
        assignment = consumer.assignment()
        positions = {partition: await consumer.position(partition) for partition in assignment}
        if consumer.assignment() != assignment:
            self._broken("assignment changed while it was read")
            return
        if self._expected and (  # nothing assigned before (the start): nothing to compare
            set(positions) != set(self._expected)
            or any(positions[p] != read_up_to.get(p, self._expected.get(p)) for p in positions)
        ):
            # Partitions came or went, or a position moved past records this feed never applied
            # (a reset to the end after the topic's metadata failed): whatever they changed is unknown.
            self._expected = positions
            self._broken("partitions or positions moved")
            return
        self._expected = positions
        now = self._clock()
        if self._confirmed_at is not None and now - self._confirmed_at > self._current_within:
            # A break: a change published meanwhile may never come.
            if self._current_since is not None:
                log.info("dispatcher_config_feed_lapsed", seconds=round(now - self._confirmed_at, 3))
            self._current_since = None
        fetched = {p: consumer.last_poll_timestamp(p) for p in assignment}
        highwaters = {p: consumer.highwater(p) for p in assignment}
        wall_ms = int(time.time() * 1000)
        if not read_to_end(positions, highwaters, fetched, wall_ms, self._current_within):
            return
        oldest_fetch_ms = min(stamp for stamp in fetched.values() if stamp is not None)
        self._confirmed_at = now - max(0.0, (wall_ms - oldest_fetch_ms) / 1000)
        if self._current_since is None:
            self._current_since = now
            log.info("dispatcher_config_feed_current")

    def _broken(self, reason: str) -> None:
        """Continuity lost: forget every answer, and vouch again only for what is loaded from now."""
        self.forget_tenant(None)
        self._current_since = None
        self._confirmed_at = None
        log.warning("dispatcher_config_feed_restarted", reason=reason)

    def _staleness(self) -> float:
        return float("inf") if self._confirmed_at is None else self._clock() - self._confirmed_at
