"""The dispatcher's configuration feed (`aforo.dispatcher.config_feed`) without a broker: which answers
a change drops, and when the feed vouches for an answer past the cache's own 1 s."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from aforo.dispatcher.config_feed import ConfigFeed, read_to_end, tenant_of
from aforo.dispatcher.metrics import CONFIG_CHANGES_INVALID
from aforo.shared.config_changes import ConfigChange, ConfigKind, ConfigOperation
from aforo.shared.ttl_cache import MISSING, TtlCache

P0, P1 = TopicPartition("config.changes", 0), TopicPartition("config.changes", 1)


class Clock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


class FakeConsumer:
    """What `ConfigFeed` asks of its consumer once a poll is done."""

    def __init__(self) -> None:
        self.positions = {P0: 4, P1: 9}
        self.highwaters: dict[TopicPartition, int | None] = {P0: 4, P1: 9}
        self.fetched_ms: dict[TopicPartition, int | None] = {P0: now_ms(), P1: now_ms()}

    def assignment(self) -> set[TopicPartition]:
        return set(self.positions)

    async def position(self, partition: TopicPartition) -> int:
        return self.positions[partition]

    def highwater(self, partition: TopicPartition) -> int | None:
        return self.highwaters[partition]

    def last_poll_timestamp(self, partition: TopicPartition) -> int | None:
        return self.fetched_ms[partition]


def now_ms() -> int:
    return int(time.time() * 1000)


def change(tenant_id: str, kind: ConfigKind = ConfigKind.WEBHOOK_ENDPOINT) -> bytes:
    return ConfigChange(
        kind=kind,
        tenant_id=tenant_id,
        document_id="doc-1",
        operation=ConfigOperation.UPSERT,
        version=3,
        document={"tenantId": tenant_id},
        changed_at=datetime.now(UTC),
    ).to_json_bytes()


def feed_and_cache() -> tuple[Clock, ConfigFeed, FakeConsumer, TtlCache]:
    """A feed on a fake consumer (current_within 1 s) keeping one cache (own TTL 1 s, vouched 60 s)."""
    clock = Clock()
    feed, consumer = feed_with(clock)
    cache = TtlCache(1, clock=clock)
    feed.keep(cache, 60)
    return clock, feed, consumer, cache


def feed_with(clock: Clock) -> tuple[ConfigFeed, FakeConsumer]:
    consumer = FakeConsumer()
    return ConfigFeed(cast(AIOKafkaConsumer, consumer), current_within=1.0, clock=clock), consumer


async def answer(value: Any) -> Any:
    return value


async def fill(cache: TtlCache, *keys: tuple[str, ...]) -> None:
    for key in keys:
        await cache.get_or_load(key, lambda: answer("stored"))


def test_read_to_end_needs_every_partition_at_its_high_water_mark_by_a_recent_fetch() -> None:
    now = 1_000_000
    at_end = {P0: 4, P1: 9}
    recent: dict[TopicPartition, int | None] = {P0: now - 200, P1: now - 900}
    assert read_to_end(at_end, {P0: 4, P1: 9}, recent, now, current_within=1.0)
    assert not read_to_end({P0: 3, P1: 9}, {P0: 4, P1: 9}, recent, now, current_within=1.0)
    assert not read_to_end(at_end, {P0: 4, P1: None}, recent, now, current_within=1.0)
    assert not read_to_end(at_end, {P0: 4, P1: 9}, {P0: now, P1: None}, now, current_within=1.0)
    # A broker that stopped answering leaves the last high-water mark: an old fetch is not current.
    assert not read_to_end(at_end, {P0: 4, P1: 9}, {P0: now, P1: now - 1500}, now, current_within=1.0)
    assert not read_to_end({}, {}, {}, now, current_within=1.0)


async def test_a_change_drops_every_answer_about_its_tenant_in_every_cache_it_keeps() -> None:
    feed, _ = feed_with(Clock())
    dispatch_cache, channel_cache = TtlCache(1), TtlCache(1)
    feed.keep(dispatch_cache, 60)
    feed.keep(channel_cache, 60)
    await fill(dispatch_cache, ("endpoints", "t1", "c1"), ("endpoint", "t1", "e1"), ("endpoint", "t2", "e1"))
    await fill(channel_cache, ("display_name", "t1", "X"), ("destinations", "t2", "c1"))

    feed.apply(change("t1", ConfigKind.EVENT_DEFINITION))

    assert dispatch_cache.fresh(("endpoints", "t1", "c1")) is MISSING
    assert dispatch_cache.fresh(("endpoint", "t1", "e1")) is MISSING
    assert channel_cache.fresh(("display_name", "t1", "X")) is MISSING
    assert dispatch_cache.fresh(("endpoint", "t2", "e1")) == "stored"
    assert channel_cache.fresh(("destinations", "t2", "c1")) == "stored"


async def test_a_record_that_does_not_parse_drops_everything_and_is_counted() -> None:
    feed, _ = feed_with(Clock())
    cache = TtlCache(1)
    feed.keep(cache, 60)
    await fill(cache, ("endpoint", "t1", "e1"), ("endpoint", "t2", "e1"))
    before = CONFIG_CHANGES_INVALID._value.get()

    feed.apply(b'{"kind": "webhook_endpoint"')

    assert CONFIG_CHANGES_INVALID._value.get() == before + 1
    assert cache.fresh(("endpoint", "t1", "e1")) is MISSING
    assert cache.fresh(("endpoint", "t2", "e1")) is MISSING


async def test_a_tombstone_drops_nothing() -> None:
    feed, _ = feed_with(Clock())
    cache = TtlCache(1)
    feed.keep(cache, 60)
    await fill(cache, ("endpoint", "t1", "e1"))
    feed.apply(None)
    assert tenant_of(None) is None
    assert cache.fresh(("endpoint", "t1", "e1")) == "stored"


async def confirm(
    feed: ConfigFeed, consumer: FakeConsumer, read: dict[TopicPartition, int] | None = None
) -> None:
    """What the feed does after a poll that returned records up to `read` (none: nothing new)."""
    for partition in consumer.fetched_ms:
        consumer.fetched_ms[partition] = now_ms()
    await feed._confirm({**dict(feed._expected or {}), **(read or {})})


async def test_answers_outlive_the_short_ttl_only_while_the_feed_is_current() -> None:
    clock, feed, consumer, cache = feed_and_cache()
    await fill(cache, ("endpoint", "t1", "early"))  # before the feed was ever current
    clock.now += 0.1
    await confirm(feed, consumer)
    clock.now += 0.1
    await fill(cache, ("endpoint", "t1", "late"))

    clock.now += 0.8
    await confirm(feed, consumer)
    clock.now += 0.9  # 1.7 s after the first load, 0.9 s after the feed last read to its end
    assert cache.fresh(("endpoint", "t1", "early")) is MISSING
    assert cache.fresh(("endpoint", "t1", "late")) == "stored"

    clock.now += 0.2  # the feed has not confirmed for 1.1 s: back to the cache's own 1 s
    assert cache.fresh(("endpoint", "t1", "late")) is MISSING
    clock.now += 58
    await confirm(feed, consumer)
    assert cache.fresh(("endpoint", "t1", "late")) is MISSING  # a break ended the run it was loaded in


async def test_a_feed_behind_its_high_water_mark_does_not_vouch() -> None:
    clock, feed, consumer, cache = feed_and_cache()
    await confirm(feed, consumer)
    clock.now += 0.1
    await fill(cache, ("endpoint", "t1", "e1"))
    consumer.highwaters[P1] = 12  # three changes not read yet
    clock.now += 0.5
    await confirm(feed, consumer)
    clock.now += 0.7
    assert cache.fresh(("endpoint", "t1", "e1")) is MISSING
    consumer.positions[P1] = 12  # caught up after a lapse of 1.3 s: a new run
    await confirm(feed, consumer, {P1: 12})
    assert cache.fresh(("endpoint", "t1", "e1")) is MISSING  # loaded before the lapse
    await fill(cache, ("endpoint", "t1", "e2"))
    for _ in range(3):
        clock.now += 0.5
        await confirm(feed, consumer)
    assert cache.fresh(("endpoint", "t1", "e2")) == "stored"
    for _ in range(120):
        clock.now += 0.5
        await confirm(feed, consumer)
    assert cache.fresh(("endpoint", "t1", "e2")) is MISSING  # past config_feed_cache_seconds


async def test_after_a_break_only_answers_loaded_since_are_vouched_for() -> None:
    clock, feed, consumer, cache = feed_and_cache()
    await confirm(feed, consumer)
    clock.now += 0.1
    await fill(cache, ("endpoint", "t1", "before-the-outage"))
    clock.now += 5  # the broker away: no confirmation for 5 s (a change published meanwhile is lost)
    await confirm(feed, consumer)
    clock.now += 0.1
    await fill(cache, ("endpoint", "t1", "after-the-outage"))
    for _ in range(3):
        clock.now += 0.5  # confirmed every poll from now on
        await confirm(feed, consumer)
    assert cache.fresh(("endpoint", "t1", "before-the-outage")) is MISSING
    assert cache.fresh(("endpoint", "t1", "after-the-outage")) == "stored"


async def test_a_position_that_jumps_past_unread_records_drops_everything() -> None:
    clock, feed, consumer, cache = feed_and_cache()
    await confirm(feed, consumer)
    clock.now += 0.1
    await fill(cache, ("endpoint", "t1", "e1"), ("endpoint", "t2", "e1"))
    consumer.positions[P0], consumer.highwaters[P0] = 7, 7  # reset to the end: records 4-6 never read
    clock.now += 0.2
    await confirm(feed, consumer)
    assert cache.fresh(("endpoint", "t1", "e1")) is MISSING
    assert cache.fresh(("endpoint", "t2", "e1")) is MISSING
    # Records read in the poll move the position lawfully: nothing is dropped.
    await fill(cache, ("endpoint", "t3", "e1"))
    consumer.positions[P0], consumer.highwaters[P0] = 9, 9
    await confirm(feed, consumer, {P0: 9})
    assert cache.fresh(("endpoint", "t3", "e1")) == "stored"


async def test_a_partition_assigned_or_unassigned_drops_everything() -> None:
    _, feed, consumer, cache = feed_and_cache()
    await confirm(feed, consumer)
    await fill(cache, ("endpoint", "t1", "e1"))
    p2 = TopicPartition("config.changes", 2)
    consumer.positions[p2], consumer.highwaters[p2], consumer.fetched_ms[p2] = 0, 0, now_ms()
    await confirm(feed, consumer)
    assert cache.fresh(("endpoint", "t1", "e1")) is MISSING


@pytest.mark.parametrize("kind", list(ConfigKind))
def test_every_kind_of_change_names_its_tenant(kind: ConfigKind) -> None:
    assert tenant_of(change("tenant-7", kind)) == "tenant-7"


async def test_wait_current_returns_once_the_feed_is_current_or_gives_up() -> None:
    feed, consumer = feed_with(Clock())
    assert not await feed.wait_current(0.0)
    await confirm(feed, consumer)
    assert await feed.wait_current(0.0)
