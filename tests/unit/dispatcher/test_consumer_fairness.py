"""A consumer loop works on every partition's records in turn: one partition's backlog must not take
the whole in-flight capacity while the customers of the other partitions wait (aiokafka's `getmany`
returns one partition until its fetch is used up). Against a fake Kafka consumer (no broker)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import TopicPartition

from aforo.dispatcher.consumers import FETCH_RECORDS, EventConsumer, interleaved
from aforo.dispatcher.dispatch import Dispatcher
from tests.support.fakes import FetchedRecord, NoFlush, dispatcher_of, dispatcher_world, invoice_envelope

TOPIC = "test.events.system"
PARTITIONS = [TopicPartition(TOPIC, number) for number in range(3)]


class OnePartitionAtATime:
    """A `getmany` in the worst case aiokafka's allows: each call returns the first partition that
    has records (up to `max_records`) and nothing of any other; `partitions` limits which are asked.
    (aiokafka's goes on to the next partition when the first has fewer than `max_records` left.)"""

    def __init__(self, per_partition: int) -> None:
        self.listener: Any = None
        self.records = {
            partition: [
                FetchedRecord(
                    TOPIC,
                    partition.partition,
                    offset,
                    invoice_envelope(f"evt-{partition.partition}-{offset}").to_json_bytes(),
                )
                for offset in range(per_partition)
            ]
            for partition in PARTITIONS
        }
        self.calls: list[tuple[int, ...]] = []

    def subscribe(self, topics: list[str], listener: Any = None) -> None:
        self.listener = listener

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def assignment(self) -> set[TopicPartition]:
        return set(PARTITIONS)

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int = 0
    ) -> dict[TopicPartition, list[FetchedRecord]]:
        self.calls.append(tuple(sorted(partition.partition for partition in partitions)))
        await asyncio.sleep(0)
        for partition in PARTITIONS:
            if (partitions and partition not in partitions) or not self.records[partition]:
                continue
            taken, self.records[partition] = (
                self.records[partition][:max_records],
                self.records[partition][max_records:],
            )
            return {partition: taken}
        await asyncio.sleep(timeout_ms / 1000)
        return {}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None: ...


class RecordingDispatcher(Dispatcher):
    """Remembers the order events were started in, and holds each until released."""

    started: list[str]
    release: asyncio.Event

    async def dispatch_event(
        self, envelope: Any, body: bytes, *, target_endpoint_id: str | None = None, unseen: bool = False
    ) -> None:
        self.started.append(envelope.event_id)
        await self.release.wait()


def test_records_of_several_partitions_come_in_turn_each_in_its_own_order() -> None:
    batch = {
        PARTITIONS[0]: ["a0", "a1", "a2"],
        PARTITIONS[1]: ["b0"],
        PARTITIONS[2]: [],
        PARTITIONS[0]._replace(partition=9): ["c0", "c1"],
    }
    order = [record for _, record in interleaved(batch)]  # type: ignore[arg-type]
    assert order == ["a0", "b0", "c0", "a1", "c1", "a2"]


async def started_consumer(
    max_in_flight: int,
) -> tuple[EventConsumer, RecordingDispatcher, OnePartitionAtATime]:
    """A consumer loop over three partitions of FETCH_RECORDS records each, its dispatcher holding
    every event it starts until released; returned once `max_in_flight` events are started."""
    dispatcher = dispatcher_of(RecordingDispatcher, dispatcher_world())
    dispatcher.started, dispatcher.release = [], asyncio.Event()
    kafka = OnePartitionAtATime(per_partition=FETCH_RECORDS)
    consumer = EventConsumer(
        dispatcher,
        NoFlush(),  # type: ignore[arg-type]
        kafka,  # type: ignore[arg-type]
        [TOPIC],
        dispatch_requests_topic="test.dispatch.requests",
        max_in_flight=max_in_flight,
        commit_interval_seconds=60,
    )
    await consumer.start()
    async with asyncio.timeout(10):
        while len(dispatcher.started) < max_in_flight:
            await asyncio.sleep(0.01)
    return consumer, dispatcher, kafka


async def stopped(consumer: EventConsumer, dispatcher: RecordingDispatcher) -> None:
    dispatcher.release.set()
    await consumer.drain()
    await consumer.stop()


async def test_the_first_records_started_are_spread_over_every_partition() -> None:
    consumer, dispatcher, kafka = await started_consumer(max_in_flight=30)
    try:
        first = dispatcher.started[:30]
        per_partition = {
            number: [event for event in first if event.startswith(f"evt-{number}-")] for number in range(3)
        }
        # The capacity of 30 is shared: ten of each partition, not thirty of the first.
        assert {number: len(events) for number, events in per_partition.items()} == {0: 10, 1: 10, 2: 10}
        for number, events in per_partition.items():
            assert events == [f"evt-{number}-{offset}" for offset in range(10)]
        # One blocking fetch of all partitions, then one of those it did not return, without waiting.
        assert kafka.calls[0] == ()
        assert kafka.calls[1] == (1, 2)
    finally:
        await stopped(consumer, dispatcher)


async def test_after_a_rebalance_nothing_more_of_the_batch_fetched_before_it_is_started() -> None:
    consumer, dispatcher, kafka = await started_consumer(max_in_flight=30)
    try:
        fetched_before = {
            f"evt-{number}-{offset}" for number in range(3) for offset in range(FETCH_RECORDS // 3)
        }
        revoking = asyncio.create_task(kafka.listener.on_partitions_revoked(set(PARTITIONS)))
        await asyncio.sleep(0)
        dispatcher.release.set()  # the loop's capacity frees once the revocation drains what runs
        await revoking
        async with asyncio.timeout(10):
            while len(dispatcher.started) < 60:
                await asyncio.sleep(0.01)
        # aiokafka restarts every partition from its committed offset on a new assignment, so the
        # rest of that batch comes again; started now, it could belong to another replica.
        assert not fetched_before & set(dispatcher.started[30:])
    finally:
        await stopped(consumer, dispatcher)
