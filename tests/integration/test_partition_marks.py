"""Partition marks on SecantusDB (`aforo.dispatcher.partition_marks`): stored before the rows they
cover, never lowered, read back per consumer group; what lets a new owner skip idempotency lookups."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import pytest_asyncio
from aiokafka import TopicPartition

from aforo.dispatcher.delivery_log import DeliveryLogRow
from aforo.dispatcher.log_writer import DeliveryLogWriter
from aforo.dispatcher.partition_marks import MarkStore, PartitionMarkKeeper
from aforo.shared.collections import DELIVERY_LOGS, PARTITION_MARKS
from aforo.shared.delivery import Channel
from aforo.shared.mongo import MongoStore
from tests.support.database import own_database
from tests.support.envelopes import make_envelope
from tests.support.stack import LocalStack

pytestmark = pytest.mark.asyncio(loop_scope="session")

TOPIC = "events.system"


@pytest_asyncio.fixture(loop_scope="session")
async def mongo(local_stack: LocalStack) -> AsyncIterator[MongoStore]:
    async with own_database(local_stack.mongo_uri, [DELIVERY_LOGS, PARTITION_MARKS]) as store:
        yield store


async def test_marks_are_per_group_and_never_lowered(mongo: MongoStore) -> None:
    store, other_group = MarkStore(mongo, "aforo-dispatcher"), MarkStore(mongo, "another-group")
    p0, p1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)
    assert await store.load([p0, p1]) == {p0: None, p1: None}

    await store.save({p0: 41, p1: 7})
    await store.save({p0: 12})  # a late, lower save (a zombie's) does not move the mark back
    assert await store.load([p0, p1]) == {p0: 41, p1: 7}
    assert await other_group.load([p0]) == {p0: None}


async def test_a_flush_stores_the_started_marks_before_the_rows_it_writes(mongo: MongoStore) -> None:
    keeper = PartitionMarkKeeper(MarkStore(mongo, "aforo-dispatcher"))
    p0 = TopicPartition(TOPIC, 0)
    await keeper.assigned([p0], now=0.0)
    assert keeper.started(p0, 0)
    assert keeper.started(p0, 1)
    writer = DeliveryLogWriter(mongo, batch_size=100, flush_interval_seconds=60)
    writer.marks = keeper
    envelope = make_envelope("INVOICE_GENERATED")
    row = DeliveryLogRow.pending(
        envelope, endpoint_id="ep-1", attempt=1, created_at=datetime.now(UTC), channel=Channel.WEBHOOK
    )
    writer.add(row, envelope.to_json_bytes())

    await writer.flush()

    rows = await mongo.collection(DELIVERY_LOGS.collection).count_documents({"eventId": envelope.event_id})
    assert rows == 1
    assert await MarkStore(mongo, "aforo-dispatcher").load([p0]) == {p0: 1}
    assert keeper.pending() == {}

    # The next owner of the partition looks up offsets 0-1 and no others.
    successor = PartitionMarkKeeper(MarkStore(mongo, "aforo-dispatcher"))
    await successor.assigned([p0], now=0.0)
    assert [successor.started(p0, offset) for offset in (0, 1, 2)] == [False, False, True]


async def test_a_mark_that_cannot_be_read_makes_every_record_looked_up_until_it_can() -> None:
    # Nothing listens on port 9: the database is away when the partition is assigned.
    away = MongoStore("mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=200", "db_away", app_name="test")
    keeper = PartitionMarkKeeper(MarkStore(away, "aforo-dispatcher"))
    p0 = TopicPartition(TOPIC, 0)
    try:
        await keeper.assigned([p0], now=100.0)
    finally:
        await away.close()
    assert keeper.marks.is_unknown(p0)
    assert not keeper.started(p0, 0)
    assert keeper.due_for_reload([p0], now=101.0) == []
    assert keeper.due_for_reload([p0], now=100.0 + PartitionMarkKeeper.RELOAD_SECONDS) == [p0]
