"""The dispatcher's configuration feed on the real broker: a published change drops the tenant's
cached answers within a poll; answers loaded before the feed was current are not kept long."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import pytest_asyncio

from aforo.dispatcher.config_feed import ConfigFeed
from aforo.shared.config_changes import ConfigChange, ConfigKind, ConfigOperation
from aforo.shared.kafka import create_consumer
from aforo.shared.settings import ServiceSettings
from aforo.shared.ttl_cache import MISSING, TtlCache
from tests.support.kafka import create_topics, produce, unique_prefix
from tests.support.stack import LocalStack

pytestmark = pytest.mark.asyncio(loop_scope="session")


def change(tenant_id: str) -> bytes:
    return ConfigChange(
        kind=ConfigKind.WEBHOOK_ENDPOINT,
        tenant_id=tenant_id,
        document_id="ep-1",
        operation=ConfigOperation.UPSERT,
        version=2,
        document={"tenantId": tenant_id, "active": False},
        changed_at=datetime.now(UTC),
    ).to_json_bytes()


async def answer(value: str) -> str:
    return value


@pytest_asyncio.fixture(loop_scope="session")
async def topic(local_stack: LocalStack) -> str:
    name = f"{unique_prefix()}config.changes"
    await create_topics(local_stack.kafka_bootstrap, [name])
    # A topic with history: the feed starts at its end.
    await produce(local_stack.kafka_bootstrap, name, [change("t1"), change("t2")])
    return name


@pytest_asyncio.fixture(loop_scope="session")
async def feed(local_stack: LocalStack, topic: str) -> AsyncIterator[ConfigFeed]:
    settings = ServiceSettings(kafka_bootstrap_servers=local_stack.kafka_bootstrap)
    consumer = create_consumer(
        settings, topic, group_id=None, auto_offset_reset="latest", fetch_max_wait_ms=100
    )
    config_feed = ConfigFeed(consumer, current_within=1.0)
    yield config_feed
    await config_feed.stop()


async def wait_until(condition: object, timeout: float) -> float:
    began = time.monotonic()
    while not condition():  # type: ignore[operator]
        if time.monotonic() - began > timeout:
            raise AssertionError(f"not within {timeout} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - began


async def test_a_published_change_drops_its_tenants_answers_within_a_poll(
    local_stack: LocalStack, topic: str, feed: ConfigFeed
) -> None:
    cache = TtlCache(ttl=0.5)
    feed.keep(cache, ttl=60)
    await cache.get_or_load(("endpoint", "t1", "loaded-before"), lambda: answer("early"))
    await feed.start()
    await wait_until(lambda: feed.vouches_for(time.monotonic()), timeout=20)
    for key in (("endpoint", "t1", "ep-1"), ("endpoints", "t1", "c1"), ("endpoint", "t2", "ep-1")):
        await cache.get_or_load(key, lambda: answer("stored"))

    await asyncio.sleep(1.0)  # past the cache's own 0.5 s: only the feed keeps these now
    assert cache.fresh(("endpoint", "t1", "loaded-before")) is MISSING  # loaded before it was current
    assert cache.fresh(("endpoint", "t1", "ep-1")) == "stored"

    await produce(local_stack.kafka_bootstrap, topic, [change("t1")], key=b"webhook_endpoint:t1:ep-1")
    took = await wait_until(lambda: cache.fresh(("endpoint", "t1", "ep-1")) is MISSING, timeout=2.0)
    assert took < 1.0
    assert cache.fresh(("endpoints", "t1", "c1")) is MISSING
    assert cache.fresh(("endpoint", "t2", "ep-1")) == "stored"  # another tenant's answers stay
