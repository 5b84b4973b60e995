"""What the consumer loop does with a record whose handling fails: an outage is retried for as long
as it lasts (never committed past), a record that triggers a bug is dead-lettered after a few tries
so it cannot hold its partition up for good. Against a fake Kafka consumer (no broker)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import TopicPartition
from pymongo.errors import ServerSelectionTimeoutError

from aforo.dispatcher.consumers import MAX_HANDLING_FAILURES, EventConsumer
from aforo.dispatcher.dispatch import Dispatcher
from tests.support.fakes import FetchedRecord, NoFlush, dispatcher_of, dispatcher_world, invoice_envelope

PARTITION = TopicPartition("test.events.system", 0)


class FakeKafkaConsumer:
    """One partition of records; `seek` moves the position, `commit` remembers the offset."""

    def __init__(self, values: list[bytes]) -> None:
        self.records = [
            FetchedRecord(PARTITION.topic, 0, offset, value) for offset, value in enumerate(values)
        ]
        self.position = 0
        self.paused: set[TopicPartition] = set()
        self.committed: int | None = None

    def subscribe(self, topics: list[str], listener: Any = None) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def assignment(self) -> set[TopicPartition]:
        return {PARTITION}

    async def getmany(
        self, timeout_ms: int = 0, max_records: int = 0
    ) -> dict[TopicPartition, list[FetchedRecord]]:
        await asyncio.sleep(0.001)
        if PARTITION in self.paused or self.position >= len(self.records):
            return {}
        batch = self.records[self.position :]
        self.position = len(self.records)
        return {PARTITION: batch}

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.position = offset

    def pause(self, partition: TopicPartition) -> None:
        self.paused.add(partition)

    def resume(self, partition: TopicPartition) -> None:
        self.paused.discard(partition)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.committed = offsets[PARTITION]


class FailingDispatcher(Dispatcher):
    """Fails the events named in `failures` the given number of times with the given error."""

    failures: dict[str, list[Exception]]
    handled: list[str]

    async def dispatch_event(
        self, envelope: Any, body: bytes, *, target_endpoint_id: str | None = None, unseen: bool = False
    ) -> None:
        self.handled.append(envelope.event_id)
        script = self.failures.get(envelope.event_id)
        if script:
            raise script.pop(0)


async def run_until(consumer: EventConsumer, condition: Any, timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)
            await consumer.commit()


def consumer_for(failures: dict[str, list[Exception]]) -> tuple[EventConsumer, FakeKafkaConsumer, Any]:
    world = dispatcher_world()
    dispatcher = dispatcher_of(FailingDispatcher, world)
    dispatcher.failures, dispatcher.handled = failures, []
    kafka = FakeKafkaConsumer([invoice_envelope(f"evt-{n}").to_json_bytes() for n in range(5)])

    consumer = EventConsumer(
        dispatcher,
        NoFlush(),  # type: ignore[arg-type]
        kafka,  # type: ignore[arg-type]
        [PARTITION.topic],
        dispatch_requests_topic="test.dispatch.requests",
        max_in_flight=10,
        commit_interval_seconds=60,
        first_backoff_seconds=0.01,
    )
    return consumer, kafka, world


async def test_an_outage_is_retried_until_it_ends_and_never_committed_past() -> None:
    outage = [ServerSelectionTimeoutError("mongodb down") for _ in range(MAX_HANDLING_FAILURES + 2)]
    consumer, kafka, world = consumer_for({"evt-2": outage})
    await consumer.start()
    try:
        await run_until(consumer, lambda: kafka.committed == 5, timeout=60)
    finally:
        await consumer.stop()
    handled = consumer.dispatcher.handled  # type: ignore[attr-defined]
    assert handled.count("evt-2") == MAX_HANDLING_FAILURES + 3  # every failure retried, then it went through
    assert world.producer.on(world.topics.dispatch_dead_letter) == []


async def test_a_record_that_triggers_a_bug_is_dead_lettered_and_the_partition_moves_on() -> None:
    bug = [ValueError("a bug this record triggers") for _ in range(10)]
    consumer, kafka, world = consumer_for({"evt-1": bug})
    await consumer.start()
    try:
        await run_until(consumer, lambda: kafka.committed == 5, timeout=60)
    finally:
        await consumer.stop()
    handled = consumer.dispatcher.handled  # type: ignore[attr-defined]
    assert handled.count("evt-1") == MAX_HANDLING_FAILURES
    [dead] = world.producer.on(world.topics.dispatch_dead_letter)
    assert dead.header("aforo-dlq-reason") == "handling_failed"
    assert "ValueError" in (dead.header("aforo-dlq-detail") or "")
    assert {"evt-0", "evt-2", "evt-3", "evt-4"} <= set(handled)
