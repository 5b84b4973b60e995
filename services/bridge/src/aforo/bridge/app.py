"""The bridge process: producer topics in, canonical envelopes out, at least once.

aiokafka rather than faust-streaming: the bridge is a stateless map whose one hard rule is
"commit only after the broker acknowledged the output", which is explicit with aiokafka (a batch's
sends are awaited, then its offsets committed), and it needs pattern subscription to dead-letter
producer topics that have no mapping. faust's per-event acking and table machinery add nothing here.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError, MessageSizeTooLargeError

from aforo.bridge.routes import TopicRoute, load_routes
from aforo.bridge.settings import BridgeSettings
from aforo.bridge.translation import DeadLetter, SourceRecord, Translation, translate
from aforo.shared.kafka import (
    TopicNames,
    create_consumer,
    create_producer,
    ensure_topics,
    kafka_answers,
    topic_specs,
)
from aforo.shared.lifecycle import Service
from aforo.shared.logging import get_logger
from aforo.shared.metrics import LATENCY_BUCKETS, Counter, Gauge, Histogram

log = get_logger(__name__)

RECORDS_IN = Counter("aforo_bridge_records_in_total", "Producer records consumed.", ["topic"])
RECORDS_OUT = Counter(
    "aforo_bridge_records_out_total",
    "Envelopes published, acknowledged by the broker.",
    ["topic", "event_type"],
)
DEAD_LETTERED = Counter(
    "aforo_bridge_dead_letter_total", "Producer records sent to the dead-letter topic.", ["reason"]
)
CONSUMER_LAG = Gauge("aforo_bridge_consumer_lag", "Records behind the partition end.", ["topic", "partition"])
BATCH_SECONDS = Histogram(
    "aforo_bridge_batch_processing_seconds",
    "From fetch to committed offsets, per batch.",
    buckets=LATENCY_BUCKETS,
)
RECORD_AGE_SECONDS = Histogram(
    "aforo_bridge_record_age_seconds",
    "From the producer record's timestamp to the broker's ack of its envelope.",
    buckets=LATENCY_BUCKETS,
)
PUBLISH_FAILURES = Counter("aforo_bridge_publish_failures_total", "Batches whose output the broker refused.")

DEAD_LETTER_DETAIL_LIMIT = 1000
RETRY_BACKOFF_SECONDS = (0.5, 1.0, 2.0, 5.0)


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
        self.consumer: AIOKafkaConsumer | None = None
        self._loop_task: asyncio.Task[None] | None = None
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
        self.producer = create_producer(settings)
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
        self._loop_task = asyncio.create_task(self._consume_forever(), name="bridge-consume")

    async def readiness_checks(self) -> dict[str, bool]:
        if self.producer is None:
            return {"kafka": False}
        return {"kafka": await kafka_answers(self.producer, self.settings.readiness_timeout_seconds)}

    def is_alive(self) -> bool:
        return self._loop_task is None or not self._loop_task.done() or self._draining

    async def drain(self) -> None:
        """Finish the batch in hand (publish, then commit); fetch nothing more."""
        self._draining = True
        if self._loop_task is not None:
            await self._loop_task

    async def stop(self) -> None:
        if self._loop_task is not None and not self._loop_task.done():
            self._loop_task.cancel()
        if self.consumer is not None:
            await self.consumer.stop()
        if self.producer is not None:
            await self.producer.stop()

    async def _consume_forever(self) -> None:
        assert self.consumer is not None
        while not self._draining:
            batch = await self.consumer.getmany(
                timeout_ms=self.settings.poll_timeout_ms, max_records=self.settings.batch_max_records
            )
            if batch:
                await self._process_until_published(batch)

    async def _process_until_published(
        self, batch: dict[TopicPartition, list[ConsumerRecord[Any, Any]]]
    ) -> None:
        """Publish a batch and commit it; on a broker refusal, back off and publish it again.

        Re-publishing after a partial failure may duplicate envelopes; they carry the same eventId.
        """
        attempt = 0
        while True:
            try:
                await self._process_batch(batch, log_dead_letters=attempt == 0)
                return
            except KafkaError as error:
                PUBLISH_FAILURES.inc()
                delay = RETRY_BACKOFF_SECONDS[min(attempt, len(RETRY_BACKOFF_SECONDS) - 1)]
                log.warning("bridge_publish_failed", error=repr(error), retry_in_seconds=delay)
                attempt += 1
                if self._draining:
                    # Hand the batch back: nothing was committed, the next owner re-reads it.
                    return
                await asyncio.sleep(delay)

    async def _process_batch(
        self, batch: dict[TopicPartition, list[ConsumerRecord[Any, Any]]], *, log_dead_letters: bool
    ) -> None:
        assert self.consumer is not None
        assert self.producer is not None
        began = time.monotonic()
        pending: list[tuple[asyncio.Future[Any], str, str, int]] = []
        offsets: dict[TopicPartition, int] = {}
        for partition, records in batch.items():
            route = self.routes.get(partition.topic)
            RECORDS_IN.labels(partition.topic).inc(len(records))
            for record in records:
                source = SourceRecord(
                    record.topic, record.partition, record.offset, record.timestamp, record.value
                )
                outcome = translate(source, route, self.settings.max_record_bytes)
                if isinstance(outcome, DeadLetter):
                    pending.append(await self._send_dead_letter(record, outcome, log_dead_letters))
                else:
                    pending.extend(await self._send_envelopes(outcome, record.timestamp))
            offsets[partition] = records[-1].offset + 1
        # At least once: offsets are committed only after every output of the batch is acknowledged.
        results = await asyncio.gather(*(future for future, _, _, _ in pending), return_exceptions=True)
        failures = [result for result in results if isinstance(result, BaseException)]
        if failures:
            for partition, records in batch.items():
                self.consumer.seek(partition, records[0].offset)
            raise failures[0] if isinstance(failures[0], KafkaError) else KafkaError(repr(failures[0]))
        now_ms = time.time() * 1000
        for _, topic, event_type, timestamp_ms in pending:
            RECORDS_OUT.labels(topic, event_type).inc()
            if timestamp_ms >= 0:
                RECORD_AGE_SECONDS.observe(max(0.0, (now_ms - timestamp_ms) / 1000))
        try:
            await self.consumer.commit(offsets)
        except CommitFailedError as error:
            # The group rebalanced under us: the partitions' new owner re-reads from the last commit.
            log.warning("bridge_commit_failed", error=repr(error))
        for partition, records in batch.items():
            highwater = self.consumer.highwater(partition)
            if highwater is not None:
                CONSUMER_LAG.labels(partition.topic, str(partition.partition)).set(
                    max(0, highwater - (records[-1].offset + 1))
                )
        BATCH_SECONDS.observe(time.monotonic() - began)

    async def _send_envelopes(
        self, translation: Translation, timestamp_ms: int
    ) -> Sequence[tuple[asyncio.Future[Any], str, str, int]]:
        assert self.producer is not None
        sent: list[tuple[asyncio.Future[Any], str, str, int]] = []
        for topic, envelope in (
            (self.topics.system_events, translation.system_envelope),
            (self.topics.widget_events, translation.widget_envelope),
        ):
            if envelope is None:
                continue
            future = await self.producer.send(
                topic,
                value=envelope.to_json_bytes(),
                key=envelope.partition_key,
                headers=[
                    ("eventType", envelope.event_type.encode()),
                    ("eventId", envelope.event_id.encode()),
                ],
            )
            sent.append((future, topic, envelope.event_type, timestamp_ms))
        return sent

    async def _send_dead_letter(
        self, record: ConsumerRecord[Any, Any], verdict: DeadLetter, log_it: bool
    ) -> tuple[asyncio.Future[Any], str, str, int]:
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
        headers = [
            *(record.headers or ()),
            ("aforo-dlq-reason", verdict.reason.value.encode()),
            ("aforo-dlq-detail", verdict.detail[:DEAD_LETTER_DETAIL_LIMIT].encode()),
            ("aforo-source-topic", record.topic.encode()),
            ("aforo-source-partition", str(record.partition).encode()),
            ("aforo-source-offset", str(record.offset).encode()),
            ("aforo-source-timestamp", str(record.timestamp).encode()),
        ]
        topic = self.topics.bridge_dead_letter
        try:
            future = await self.producer.send(topic, value=record.value, key=record.key, headers=headers)
        except MessageSizeTooLargeError:
            # Larger than the producer may send: keep what fits and say so, rather than block the stream.
            headers.append(("aforo-dlq-truncated", b"true"))
            limit = self.settings.max_record_bytes
            future = await self.producer.send(
                topic, value=(record.value or b"")[:limit], key=record.key, headers=headers
            )
        return future, topic, "dead_letter", -1
