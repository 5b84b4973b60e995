"""The widget topic in, every open stream of this replica out: the gateway's only Kafka consumer.

Every replica reads every partition of `<prefix>events.widget` itself (no consumer group, nothing
committed): each event must reach the browsers on whichever replica holds them, and a plain load
balancer decides that. On start the replica rebuilds its resume history by reading from
`now - history_window_seconds` (`offsets_for_times`) up to the end offsets it found, and only then
reports itself loaded (ready) and accepts streams; a restarted replica can therefore replay every
event of the window, up to `history_per_stream` per customer.

Only those explicit seeks position the consumer. Should a position ever fall out of range (the log
truncated under it), it resets to the end (`latest`), never to the start, and any event older than
the window is kept from live streams anyway (`too_old_to_deliver`): open widgets are never flooded
with old events, and what a resume can replay stays exactly the window.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from aforo.shared.kafka import caught_up, create_consumer, kafka_answers
from aforo.shared.logging import get_logger
from aforo.sse_gateway.connections import ConnectionRegistry
from aforo.sse_gateway.history import HistoryEntry, HistoryStore, too_old_to_deliver
from aforo.sse_gateway.metrics import (
    EVENTS_DROPPED,
    EVENTS_RECEIVED,
    FANOUT_LATENCY,
    HISTORY_EVENTS,
)
from aforo.sse_gateway.settings import SseGatewaySettings
from aforo.sse_gateway.widget_messages import Dropped, DropReason, widget_event_from_envelope

log = get_logger(__name__)

PARTITION_WAIT_SECONDS = 30.0
EXPIRE_EVERY_SECONDS = 5.0
ERROR_BACKOFF_SECONDS = 1.0


class WidgetFeed:
    """Consumes the widget topic into the history and the registry; `loaded` once caught up."""

    def __init__(
        self,
        settings: SseGatewaySettings,
        topic: str,
        registry: ConnectionRegistry,
        history: HistoryStore,
        *,
        wall_clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self.settings = settings
        self.topic = topic
        self.registry = registry
        self.history = history
        self.wall_clock_ms = wall_clock_ms
        self.loaded = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._targets: dict[TopicPartition, int] = {}
        self._stopping = False

    async def start(self) -> None:
        self._consumer = create_consumer(
            self.settings,
            group_id=None,
            fetch_max_wait_ms=self.settings.consumer_fetch_max_wait_ms,
            auto_offset_reset="latest",
        )
        await self._consumer.start()
        partitions = await self._partitions()
        self._consumer.assign(partitions)
        await self._seek_to_window(partitions)
        self._task = asyncio.create_task(self._consume_forever(), name="sse-widget-feed")

    async def _partitions(self) -> list[TopicPartition]:
        assert self._consumer is not None
        deadline = time.monotonic() + PARTITION_WAIT_SECONDS
        while True:
            # A consumer without a subscription keeps no metadata of its own: ask the cluster
            # (`_client` is aiokafka's, as in aforo.shared.kafka.kafka_answers).
            cluster = await self._consumer._client.fetch_all_metadata()
            numbers = cluster.partitions_for_topic(self.topic)
            if numbers:
                return [TopicPartition(self.topic, number) for number in sorted(numbers)]
            if time.monotonic() > deadline:
                raise RuntimeError(f"topic {self.topic} has no partitions after {PARTITION_WAIT_SECONDS} s")
            await asyncio.sleep(0.2)

    async def _seek_to_window(self, partitions: list[TopicPartition]) -> None:
        """Position every partition at the history window's start; remember where "caught up" is."""
        assert self._consumer is not None
        ends = await self._consumer.end_offsets(partitions)
        window_ms = int(self.settings.history_window_seconds * 1000)
        starts: dict[TopicPartition, Any] = {}
        if window_ms > 0 and self.settings.history_per_stream > 0:
            since = self.wall_clock_ms() - window_ms
            starts = await self._consumer.offsets_for_times(dict.fromkeys(partitions, since))
        for partition in partitions:
            found = starts.get(partition)
            self._consumer.seek(partition, found.offset if found is not None else ends[partition])
        self._targets = {partition: ends[partition] for partition in partitions}
        backlog = sum(
            ends[partition] - (starts[partition].offset if starts.get(partition) else ends[partition])
            for partition in partitions
        )
        log.info("sse_history_rebuild", topic=self.topic, partitions=len(partitions), records=backlog)
        if backlog == 0:
            self.loaded.set()

    async def _caught_up(self) -> bool:
        assert self._consumer is not None
        return await caught_up(self._consumer, self._targets)

    async def _consume_forever(self) -> None:
        assert self._consumer is not None
        next_expiry = time.monotonic() + EXPIRE_EVERY_SECONDS
        while not self._stopping:
            try:
                batch = await self._consumer.getmany(timeout_ms=200, max_records=1000)
            except KafkaError as error:
                log.warning("sse_feed_fetch_failed", error=repr(error))
                await asyncio.sleep(ERROR_BACKOFF_SECONDS)
                continue
            for records in batch.values():
                for record in records:
                    if self._handle_safely(record):
                        # Let the streams' writers run before the next event: a healthy client's
                        # queue then stays near empty during a burst, and only a client that does
                        # not read fills its queue and is cut off.
                        await asyncio.sleep(0)
            if not self.loaded.is_set() and await self._caught_up():
                self.loaded.set()
                log.info("sse_history_loaded", events=len(self.history), streams=self.history.stream_count)
            if time.monotonic() >= next_expiry:
                self.history.expire(self.wall_clock_ms())
                HISTORY_EVENTS.set(len(self.history))
                next_expiry = time.monotonic() + EXPIRE_EVERY_SECONDS

    def _handle_safely(self, record: ConsumerRecord[Any, Any]) -> int:
        """`handle`, but a record it cannot handle is dropped and logged: one bad record must not end
        the feed of every stream on this replica (and of every replica, each reading it)."""
        try:
            return self.handle(record)
        except Exception:
            EVENTS_DROPPED.labels(DropReason.INVALID_ENVELOPE.value).inc()
            log.exception("sse_event_unhandled", partition=record.partition, offset=record.offset)
            return 0

    def handle(self, record: ConsumerRecord[Any, Any]) -> int:
        """One widget record: into the history (once per eventId), then to this customer's streams.
        Returns how many streams it was queued to."""
        EVENTS_RECEIVED.inc()
        outcome = widget_event_from_envelope(record.value)
        if isinstance(outcome, Dropped):
            EVENTS_DROPPED.labels(outcome.reason.value).inc()
            log.warning(
                "sse_event_dropped",
                reason=outcome.reason.value,
                detail=outcome.detail,
                partition=record.partition,
                offset=record.offset,
            )
            return 0
        key = (outcome.tenant_id, outcome.customer_id)
        now_ms = self.wall_clock_ms()
        if too_old_to_deliver(record.timestamp, now_ms, self.history.window_ms):
            EVENTS_DROPPED.labels(DropReason.TOO_OLD.value).inc()
            return 0
        entry = HistoryEntry(outcome.event_id, outcome.frame, record.timestamp)
        if not self.history.record(key, entry, now_ms):
            EVENTS_DROPPED.labels(DropReason.DUPLICATE.value).inc()
            return 0
        delivered = self.registry.publish(key, outcome.event_type, outcome.frame)
        if self.loaded.is_set():
            FANOUT_LATENCY.observe(max(0.0, (now_ms - record.timestamp) / 1000))
        return delivered

    async def answers(self, timeout_seconds: float) -> bool:
        return self._consumer is not None and await kafka_answers(self._consumer, timeout_seconds)

    def is_alive(self) -> bool:
        return self._task is None or not self._task.done() or self._stopping

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 2.0)
            except TimeoutError:
                self._task.cancel()
        if self._consumer is not None:
            await self._consumer.stop()
