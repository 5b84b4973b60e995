"""The one Kafka helper: topic names, client factories, topic creation, readiness.

Every topic the suite owns is named here, behind a configurable prefix, from the one registry in
`aforo.shared.topics` (which also sizes them for deployment), so a newcomer can see the whole data
flow in one place (see README, "Topics"). Producer topics (`billing.invoice.finalized`, ...)
belong to the billing platform and are named by the bridge's mapping file instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from aforo.shared import topics
from aforo.shared.serde import dumps_json, loads_json
from aforo.shared.settings import ServiceSettings

__all__ = [
    "CachedKeyPartitioner",
    "RenewingProducer",
    "TopicNames",
    "TopicSpec",
    "caught_up",
    "create_consumer",
    "create_producer",
    "dumps_json",
    "ensure_topics",
    "kafka_answers",
    "loads_json",
    "renew_producer",
    "topic_specs",
]


@dataclass(frozen=True)
class TopicNames:
    """Names of the suite's own topics, all under one prefix (default `aforo.`)."""

    prefix: str

    @property
    def system_events(self) -> str:
        """Bridge → trigger, dispatcher: canonical SYSTEM event envelopes."""
        return topics.SYSTEM_EVENTS.name(self.prefix)

    @property
    def custom_events(self) -> str:
        """Trigger and API manual emit → dispatcher: CUSTOM event envelopes."""
        return topics.CUSTOM_EVENTS.name(self.prefix)

    @property
    def widget_events(self) -> str:
        """Bridge → SSE gateway: widget (browser) events."""
        return topics.WIDGET_EVENTS.name(self.prefix)

    @property
    def config_changes(self) -> str:
        """API → trigger, dispatcher: compacted configuration changes for their caches."""
        return topics.CONFIG_CHANGES.name(self.prefix)

    @property
    def bridge_dead_letter(self) -> str:
        """Producer records the bridge could not turn into an envelope, bytes untouched."""
        return topics.BRIDGE_DEAD_LETTER.name(self.prefix)

    @property
    def trigger_dead_letter(self) -> str:
        """SYSTEM-event records the trigger agent could not parse."""
        return topics.TRIGGER_DEAD_LETTER.name(self.prefix)

    @property
    def dispatch_requests(self) -> str:
        """API → dispatcher: replays, recoveries and webhook.test probes aimed at one endpoint."""
        return topics.DISPATCH_REQUESTS.name(self.prefix)

    @property
    def dispatch_dead_letter(self) -> str:
        """Deliveries that exhausted their retries."""
        return topics.DISPATCH_DEAD_LETTER.name(self.prefix)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int = 1
    config: dict[str, str] = field(default_factory=dict)


_MURMUR_M = 0x5BD1E995
_U32 = 0xFFFFFFFF
_WORDS = tuple(struct.Struct(f"<{count}I") for count in range(64))


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 of a key (`org.apache.kafka.common.utils.Utils.murmur2`), as aiokafka computes
    it, about twice as fast: the 4-byte little-endian words are unpacked at once rather than byte by
    byte. A unit test holds it equal to `aiokafka.partitioner.murmur2` on many keys (hypothesis)."""
    length = len(data)
    h = 0x9747B28C ^ length
    words = length >> 2
    unpack = (_WORDS[words] if words < len(_WORDS) else struct.Struct(f"<{words}I")).unpack_from
    for k in unpack(data):
        k = (k * _MURMUR_M) & _U32
        k = ((k ^ (k >> 24)) * _MURMUR_M) & _U32
        h = ((h * _MURMUR_M) & _U32) ^ k
    rest = length & 3
    if rest:
        tail = length & ~3
        if rest >= 3:
            h ^= data[tail + 2] << 16
        if rest >= 2:
            h ^= data[tail + 1] << 8
        h = ((h ^ data[tail]) * _MURMUR_M) & _U32
    h = ((h ^ (h >> 13)) * _MURMUR_M) & _U32
    return h ^ (h >> 15)


class CachedKeyPartitioner:
    """Kafka's default key partitioning (murmur2 of the key, as the Java client and aiokafka compute
    it), with each key's hash remembered in a bounded cache.

    Why: aiokafka's murmur2 is pure Python and was the bridge's top cost per record (`murmur2` here is
    the same function, faster), while the keys repeat (`tenantId:customerId`: a customer's events share one). The partition is the same as
    aiokafka's `DefaultPartitioner` gives, byte for byte (a unit test compares them on many keys);
    only the hash of a key seen before is not computed again. Keyless records go to a random
    available partition, as before.
    """

    def __init__(self, max_keys: int = 100_000) -> None:
        self._max_keys = max_keys
        self._hashes: dict[bytes, int] = {}

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return random.choice(available or all_partitions)  # noqa: S311 - load spreading, not security
        return self.partition_for(key, all_partitions)

    def partition_for(self, key: bytes, partitions: Sequence[int]) -> int:
        """The partition of `key` among a topic's partitions (in id order, as aiokafka lists them)."""
        hashed = self._hashes.get(key)
        if hashed is None:
            hashed = murmur2(key) & 0x7FFFFFFF
            if len(self._hashes) >= self._max_keys:
                del self._hashes[next(iter(self._hashes))]  # the oldest key makes room
            self._hashes[key] = hashed
        return partitions[hashed % len(partitions)]


def topic_partitions(producer: AIOKafkaProducer, topic: str) -> list[int]:
    """A topic's partitions as the producer's metadata knows them, in id order; empty until it knows.

    With them a hot loop hands `send` the partition itself (`CachedKeyPartitioner.partition_for`):
    aiokafka otherwise copies the topic's partition sets into two lists on every `send`."""
    return sorted(producer.client.cluster.partitions_for_topic(topic) or ())


def create_producer(settings: ServiceSettings, **overrides: Any) -> AIOKafkaProducer:
    """An idempotent producer that waits for all in-sync replicas: an ack means the record is durable."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "client_id": settings.service_name,
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        # aiokafka keeps one open batch per partition; 16 KiB (its default) fills in a few dozen
        # envelopes and then makes every send() wait. 256 KiB keeps a busy producer streaming.
        "max_batch_size": 256 * 1024,
        "request_timeout_ms": 30_000,
        "partitioner": CachedKeyPartitioner(),
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


PRODUCER_START_BACKOFF_SECONDS = (0.5, 1.0, 2.0, 5.0)


async def renew_producer(old: AIOKafkaProducer | None, settings: ServiceSettings) -> AIOKafkaProducer:
    """Replace a producer whose sends failed with a started new one (a new producer id).

    Why: aiokafka's idempotent producer never recovers from some broker outages. Batches that expired
    while the broker was away leave a gap in its sequence numbers, or a restarted broker has lost its
    producer state; the broker then answers OutOfOrderSequenceNumber, which stops the producer's
    sender for good and fails every later send. The Java client bumps its epoch; aiokafka does not,
    so a service that must keep publishing starts a new producer (retrying until the broker answers)
    and sends its unacknowledged records again.
    """
    if old is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(old.stop(), 10)
    attempt = 0
    while True:
        producer = create_producer(settings)
        try:
            await producer.start()
        except KafkaError:
            with contextlib.suppress(Exception):
                await producer.stop()
            await asyncio.sleep(
                PRODUCER_START_BACKOFF_SECONDS[min(attempt, len(PRODUCER_START_BACKOFF_SECONDS) - 1)]
            )
            attempt += 1
            continue
        return producer


async def caught_up(consumer: AIOKafkaConsumer, targets: Mapping[TopicPartition, int] | None = None) -> bool:
    """Whether a consumer has read up to `targets` (per partition, the offset to reach), or, without
    targets, up to the high-water mark of every partition it is assigned (one that has fetched nothing
    yet, whose high-water mark is unknown, is not caught up). The one "caught up" check of the suite."""
    if targets is None:
        targets = {}
        for partition in consumer.assignment():
            highwater = consumer.highwater(partition)
            if highwater is None:
                return False
            targets[partition] = highwater
    for partition, target in targets.items():
        if await consumer.position(partition) < target:
            return False
    return True


class RenewingProducer:
    """`send_and_wait` through a producer that is replaced when the broker refuses it.

    For services whose sends are awaited one record at a time (the dispatcher): a refused send still
    raises (the caller's record is handled again), but the next send goes through a new producer
    (`renew_producer`) instead of one aiokafka will never recover. Concurrent failures share one
    renewal.
    """

    def __init__(self, producer: AIOKafkaProducer, settings: ServiceSettings) -> None:
        self._producer = producer
        self._settings = settings
        self._renewal: asyncio.Task[AIOKafkaProducer] | None = None

    @property
    def current(self) -> AIOKafkaProducer:
        return self._producer

    async def send_and_wait(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> Any:
        producer = self._producer
        try:
            return await producer.send_and_wait(topic, value, key=key, headers=list(headers or ()))
        except KafkaError:
            await self._renew(producer)
            raise

    async def _renew(self, failed: AIOKafkaProducer) -> None:
        if self._producer is not failed:
            return  # another send renewed it already
        if self._renewal is None or self._renewal.done():
            self._renewal = asyncio.create_task(renew_producer(failed, self._settings), name="renew-producer")
        self._producer = await asyncio.shield(self._renewal)


def create_consumer(
    settings: ServiceSettings, *topics: str, group_id: str | None, **overrides: Any
) -> AIOKafkaConsumer:
    """A consumer that never auto-commits: services commit only after their output is acknowledged."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "client_id": settings.service_name,
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
        "max_poll_interval_ms": 300_000,
        "session_timeout_ms": 10_000,
        "heartbeat_interval_ms": 3_000,
    }
    options.update(overrides)
    return AIOKafkaConsumer(*topics, **options)


async def ensure_topics(bootstrap_servers: str, specs: Iterable[TopicSpec], client_id: str = "aforo") -> None:
    """Create the topics that do not exist yet; existing ones are left as they are."""
    wanted = list(specs)
    if not wanted:
        return
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id=client_id)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in wanted if spec.name not in existing]
        if not missing:
            return
        new_topics = [
            NewTopic(
                name=spec.name,
                num_partitions=spec.partitions,
                replication_factor=spec.replication_factor,
                topic_configs=spec.config,
            )
            for spec in missing
        ]
        # Another replica may create one between our list and create: the goal is met all the same.
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics(new_topics)
    finally:
        await admin.close()


async def kafka_answers(client: AIOKafkaProducer | AIOKafkaConsumer, timeout_seconds: float) -> bool:
    """Readiness: the broker answers a metadata request within the timeout."""
    # The producer exposes its AIOKafkaClient as `client`, the consumer as `_client`.
    kafka_client = client.client if isinstance(client, AIOKafkaProducer) else client._client
    try:
        await asyncio.wait_for(kafka_client.fetch_all_metadata(), timeout_seconds)
    except (TimeoutError, OSError, KafkaError):
        return False
    return True


def topic_specs(names: Sequence[str], settings: ServiceSettings, **config: str) -> list[TopicSpec]:
    """Specs for topics that take the suite's default partitions and replication.

    An owned topic also takes its cleanup policy and retention from the registry (`aforo.shared.topics`),
    so a topic a process creates matches the KafkaTopic a cluster declares; `config` overrides them.
    """
    registry = {topic.name(settings.topic_prefix): topic.kafka_config() for topic in topics.OWNED_TOPICS}
    return [
        TopicSpec(
            name,
            settings.topic_partitions,
            settings.topic_replication_factor,
            {**registry.get(name, {}), **config},
        )
        for name in names
    ]
