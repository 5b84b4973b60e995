"""The bridge process: producer topics in, canonical envelopes out, at least once.

aiokafka rather than faust-streaming: the bridge is a stateless map whose one hard rule is
"commit only after the broker acknowledged the output", which is explicit with aiokafka (a batch's
sends are awaited, then its offsets committed), and it needs pattern subscription to dead-letter
producer topics that have no mapping. faust's per-event acking and table machinery add nothing here.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from dataclasses import dataclass, field, replace
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError, MessageSizeTooLargeError

from aforo.bridge.metrics import (
    BATCH_SECONDS,
    CONSUMER_LAG,
    DEAD_LETTERED,
    PUBLISH_FAILURES,
    RECORD_AGE_SECONDS,
    RECORDS_IN,
    RECORDS_OUT,
)
from aforo.bridge.output_batches import OutputBatches
from aforo.bridge.routes import TopicRoute, load_routes
from aforo.bridge.settings import BridgeSettings
from aforo.bridge.translation import DeadLetter, translate
from aforo.shared.background import BackgroundTasks
from aforo.shared.dead_letters import DeadLetterHeaders
from aforo.shared.envelope import envelope_headers
from aforo.shared.kafka import (
    CachedKeyPartitioner,
    TopicNames,
    create_consumer,
    create_producer,
    ensure_topics,
    kafka_answers,
    renew_producer,
    topic_partitions,
    topic_specs,
)
from aforo.shared.lifecycle import Service
from aforo.shared.logging import get_logger

log = get_logger(__name__)


RETRY_BACKOFF_SECONDS = (0.5, 1.0, 2.0, 5.0)


@dataclass
class _SentBatch:
    """A batch whose outputs are with the producer: what to await, then what to commit."""

    began: float
    futures: list[asyncio.Future[Any]] = field(default_factory=list)
    first_offsets: dict[TopicPartition, int] = field(default_factory=dict)
    next_offsets: dict[TopicPartition, int] = field(default_factory=dict)
    out_counts: dict[tuple[str, str], int] = field(default_factory=dict)
    record_timestamps_ms: list[int] = field(default_factory=list)


def subscription_pattern(routes: dict[str, TopicRoute], extra_pattern: str, source_topic_prefix: str) -> str:
    """Mapped topics exactly, plus the watched pattern (whose unmapped topics are dead-lettered)."""
    exact = "|".join(re.escape(topic) for topic in sorted(routes))
    watched = f"{re.escape(source_topic_prefix)}(?:{extra_pattern})" if extra_pattern else ""
    alternatives = [part for part in (exact, watched) if part]
    return "^(?:" + "|".join(alternatives) + ")$"


class BridgeService(Service):
    name = "bridge"

    def __init__(self, settings: BridgeSettings) -> None:
        self.settings = settings
        self.topics = TopicNames(settings.topic_prefix)
        self.routes: dict[str, TopicRoute] = {}
        self.producer: AIOKafkaProducer | None = None
        self.partitioner = CachedKeyPartitioner()
        """Partitions each output's key itself (the producer's default partitioner, the same answer)."""
        self.consumer: AIOKafkaConsumer | None = None
        self._loops = BackgroundTasks("bridge")
        self._draining = False

    async def start(self) -> None:
        settings = self.settings
        self.routes = load_routes(settings.routes_path, settings.source_topic_prefix)
        await ensure_topics(
            settings.kafka_bootstrap_servers,
            topic_specs(
                [self.topics.system_events, self.topics.widget_events, self.topics.bridge_dead_letter],
                settings,
            ),
        )
        self.producer = create_producer(settings, partitioner=self.partitioner)
        await self.producer.start()
        self.consumer = create_consumer(
            settings,
            group_id=settings.consumer_group,
            metadata_max_age_ms=settings.metadata_max_age_ms,
            max_partition_fetch_bytes=max(1024 * 1024, settings.max_record_bytes * 2),
        )
        pattern = subscription_pattern(
            self.routes, settings.source_topic_pattern, settings.source_topic_prefix
        )
        self.consumer.subscribe(pattern=pattern)
        await self.consumer.start()
        log.info("bridge_subscribed", pattern=pattern, routes=len(self.routes))
        self._loops.spawn("consume", self._consume_forever())

    async def readiness_checks(self) -> dict[str, bool]:
        if self.producer is None:
            return {"kafka": False}
        return {"kafka": await kafka_answers(self.producer, self.settings.readiness_timeout_seconds)}

    def is_alive(self) -> bool:
        return self._draining or self._loops.alive()

    async def drain(self) -> None:
        """Finish the batch in hand (publish, then commit); fetch nothing more."""
        self._draining = True
        await self._loops.wait("consume")

    async def stop(self) -> None:
        await self._loops.cancel_all()
        if self.consumer is not None:
            await self.consumer.stop()
        if self.producer is not None:
            await self.producer.stop()

    async def _consume_forever(self) -> None:
        """Fetch, translate and send batch N+1 while batch N's acks are awaited, then commit N.

        One batch in flight keeps the broker busy without breaking the rule: offsets are committed
        in order, each only after every output of its batch is acknowledged. A broker outage never
        ends the loop: whatever was not acknowledged is read and sent again once the broker is back.
        """
        assert self.consumer is not None
        in_flight: _SentBatch | None = None
        while not self._draining:
            batch = await self.consumer.getmany(
                timeout_ms=self.settings.poll_timeout_ms, max_records=self.settings.batch_max_records
            )
            try:
                sent = await self._send_batch(batch, log_dead_letters=True) if batch else None
            except KafkaError as error:
                # send() itself refused (no metadata within its timeout, or a stopped producer).
                first_offsets = {partition: records[0].offset for partition, records in batch.items()}
                await self._recover(error, in_flight.first_offsets if in_flight else {}, first_offsets)
                in_flight = None
                continue
            if in_flight is not None and not await self._complete(in_flight, sent):
                in_flight = None
                continue
            in_flight = sent
        if in_flight is not None:
            await self._complete(in_flight, None)

    async def _send_batch(
        self, batch: dict[TopicPartition, list[ConsumerRecord[Any, Any]]], *, log_dead_letters: bool
    ) -> _SentBatch:
        """Translate every record and hand its outputs to the producer; nothing is awaited for acks."""
        assert self.producer is not None
        sent = _SentBatch(began=time.monotonic())
        out_counts: dict[tuple[str, str], int] = {}
        system_topic, widget_topic = self.topics.system_events, self.topics.widget_events
        # Each output's partition is computed here, once per batch's metadata (`topic_partitions`).
        partitions = {topic: await self._output_partitions(topic) for topic in (system_topic, widget_topic)}
        partition_for = self.partitioner.partition_for
        outputs = OutputBatches(self.producer)
        for partition, records in batch.items():
            route = self.routes.get(partition.topic)
            RECORDS_IN.labels(partition.topic).inc(len(records))
            sent.first_offsets[partition] = records[0].offset
            sent.next_offsets[partition] = records[-1].offset + 1
            for record in records:
                outcome = translate(record, route, self.settings.max_record_bytes)
                if isinstance(outcome, DeadLetter):
                    sent.futures.append(await self._send_dead_letter(record, outcome, log_dead_letters))
                    continue
                for topic, envelope in ((system_topic, outcome.system), (widget_topic, outcome.widget)):
                    if envelope is None:
                        continue
                    await outputs.add(
                        topic,
                        partition_for(envelope.key, partitions[topic]),
                        envelope.key,
                        envelope.value,
                        envelope_headers(envelope.event_type, envelope.event_id),
                    )
                    out_counts[(topic, envelope.event_type)] = (
                        out_counts.get((topic, envelope.event_type), 0) + 1
                    )
                sent.record_timestamps_ms.append(record.timestamp)
        sent.futures.extend(await outputs.close())
        sent.out_counts = out_counts
        return sent

    async def _output_partitions(self, topic: str) -> list[int]:
        """The topic's partitions from the producer's metadata, waiting for it when it has none yet
        (a new producer; `partitions_for` fails with a KafkaError when the broker does not answer)."""
        assert self.producer is not None
        known = topic_partitions(self.producer, topic)
        if not known:
            known = sorted(await self.producer.partitions_for(topic))
        return known

    async def _complete(self, sent: _SentBatch, following: _SentBatch | None) -> bool:
        """Await a batch's acks, then commit it. On a refusal rewind to it and return False.

        Rewinding also covers the batch already sent after it: both are read and published again,
        duplicates carrying the same eventId.
        """
        assert self.consumer is not None
        results = await asyncio.gather(*sent.futures, return_exceptions=True)
        failure = next((result for result in results if isinstance(result, BaseException)), None)
        if failure is not None:
            await self._recover(failure, sent.first_offsets, following.first_offsets if following else {})
            return False
        now_ms = time.time() * 1000
        for (topic, event_type), count in sent.out_counts.items():
            RECORDS_OUT.labels(topic, event_type).inc(count)
        for timestamp_ms in sent.record_timestamps_ms:
            RECORD_AGE_SECONDS.observe(max(0.0, (now_ms - timestamp_ms) / 1000))
        try:
            await self.consumer.commit(sent.next_offsets)
        except KafkaError as error:
            # The group rebalanced under us (CommitFailedError, or the partitions are no longer
            # assigned): their new owner re-reads from the last commit.
            log.warning("bridge_commit_failed", error=repr(error))
        for partition, next_offset in sent.next_offsets.items():
            highwater = self.consumer.highwater(partition)
            if highwater is not None:
                CONSUMER_LAG.labels(partition.topic, str(partition.partition)).set(
                    max(0, highwater - next_offset)
                )
        BATCH_SECONDS.observe(time.monotonic() - sent.began)
        return True

    async def _recover(self, failure: BaseException, *unacknowledged: dict[TopicPartition, int]) -> None:
        """After a refused publish: rewind to the first unacknowledged record of every partition,
        replace the producer (aiokafka's cannot recover from a sequence gap, see `renew_producer`)
        and pause before reading them again; the re-sent envelopes carry the same eventIds."""
        assert self.consumer is not None
        PUBLISH_FAILURES.inc()
        log.warning("bridge_publish_failed", error=repr(failure))
        rewind: dict[TopicPartition, int] = {}
        for offsets in unacknowledged:
            for partition, offset in offsets.items():
                rewind[partition] = min(offset, rewind.get(partition, offset))
        for partition, offset in rewind.items():
            # A partition no longer ours after a rebalance: its new owner reads from the last commit.
            with contextlib.suppress(IllegalStateError):
                self.consumer.seek(partition, offset)
        self.producer = await renew_producer(self.producer, self.settings)
        await asyncio.sleep(RETRY_BACKOFF_SECONDS[0])

    async def _send_dead_letter(
        self, record: ConsumerRecord[Any, Any], verdict: DeadLetter, log_it: bool
    ) -> asyncio.Future[Any]:
        """The original bytes and key, the original headers, and why, in `aforo-dlq-*` headers."""
        assert self.producer is not None
        DEAD_LETTERED.labels(verdict.reason.value).inc()
        if log_it:
            log.warning(
                "bridge_dead_letter",
                reason=verdict.reason.value,
                detail=verdict.detail,
                source_topic=record.topic,
                partition=record.partition,
                offset=record.offset,
            )
        dead_letter = DeadLetterHeaders(
            verdict.reason.value,
            verdict.detail,
            extra=(
                ("aforo-source-topic", record.topic),
                ("aforo-source-partition", str(record.partition)),
                ("aforo-source-offset", str(record.offset)),
                ("aforo-source-timestamp", str(record.timestamp)),
            ),
        )
        headers = dead_letter.to_kafka(record.headers or ())
        topic = self.topics.bridge_dead_letter
        future: asyncio.Future[Any]
        try:
            future = await self.producer.send(topic, value=record.value, key=record.key, headers=headers)
        except MessageSizeTooLargeError:
            # Larger than the producer may send: keep what fits and say so, rather than block the stream.
            headers = replace(dead_letter, truncated=True).to_kafka(record.headers or ())
            limit = self.settings.max_record_bytes
            future = await self.producer.send(
                topic, value=(record.value or b"")[:limit], key=record.key, headers=headers
            )
        return future
