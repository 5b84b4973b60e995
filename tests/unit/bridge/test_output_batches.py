"""`OutputBatches`: each output in its (topic, partition)'s batch, in order; a full batch handed over
at once and a new one started; every open batch handed over on close, one future each."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from aiokafka import AIOKafkaProducer

from aforo.bridge.output_batches import OutputBatches


class SmallBatch:
    """A record batch that holds `capacity` records (an empty one takes any one record)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.records: list[tuple[bytes, bytes, list[tuple[str, bytes]]]] = []

    def append(
        self, *, timestamp: None, key: bytes, value: bytes, headers: list[tuple[str, bytes]]
    ) -> object:
        assert timestamp is None  # the broker's clock, as `send` leaves it
        if self.records and len(self.records) >= self.capacity:
            return None
        self.records.append((key, value, headers))
        return object()

    def record_count(self) -> int:
        return len(self.records)


class BatchingProducer:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.handed: list[tuple[str, int, list[bytes]]] = []

    def create_batch(self) -> SmallBatch:
        return SmallBatch(self.capacity)

    async def send_batch(self, batch: SmallBatch, topic: str, *, partition: int) -> asyncio.Future[Any]:
        self.handed.append((topic, partition, [value for _, value, _ in batch.records]))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


async def test_outputs_go_to_their_partition_in_order_and_full_batches_go_at_once() -> None:
    producer = BatchingProducer(capacity=2)
    outputs = OutputBatches(cast(AIOKafkaProducer, producer))
    for index in range(5):
        await outputs.add("events.system", index % 2, b"k", f"s{index}".encode(), [("eventId", b"e")])
    await outputs.add("events.widget", 0, b"k", b"w0", [])
    assert producer.handed == [("events.system", 0, [b"s0", b"s2"])]  # full at s4: handed over then

    futures = await outputs.close()

    assert producer.handed == [
        ("events.system", 0, [b"s0", b"s2"]),
        ("events.system", 0, [b"s4"]),
        ("events.system", 1, [b"s1", b"s3"]),
        ("events.widget", 0, [b"w0"]),
    ]
    assert len(futures) == 4
    assert all(future.done() for future in futures)


async def test_a_record_larger_than_a_batch_goes_alone() -> None:
    producer = BatchingProducer(capacity=0)
    outputs = OutputBatches(cast(AIOKafkaProducer, producer))
    await outputs.add("events.system", 0, b"k", b"big-1", [])
    await outputs.add("events.system", 0, b"k", b"big-2", [])
    await outputs.close()
    assert producer.handed == [("events.system", 0, [b"big-1"]), ("events.system", 0, [b"big-2"])]


async def test_closing_without_outputs_hands_over_nothing() -> None:
    producer = BatchingProducer(capacity=2)
    assert await OutputBatches(cast(AIOKafkaProducer, producer)).close() == []
    assert producer.handed == []
