"""The API's Kafka edge: envelopes, dispatch requests and config changes, each awaited until acked.

An emit, a probe or a replay *is* its publish: without the broker's acknowledgement the request
failed, and the client gets 503 to retry. A config change follows a MongoDB write that already
happened: if it cannot be published the write stands (MongoDB is the source of truth), the failure is
logged and counted, and the caches pick the change up at their next resync.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from aforo.api.problems import UnavailableError
from aforo.shared.config_changes import ConfigChange
from aforo.shared.dispatch_requests import DispatchRequest
from aforo.shared.envelope import EventEnvelope
from aforo.shared.kafka import TopicNames
from aforo.shared.logging import get_logger
from aforo.shared.metrics import METRIC_PREFIX, Counter

log = get_logger(__name__)

PUBLISHED = Counter(f"{METRIC_PREFIX}api_published_total", "Records the API published, by kind.", ["kind"])
PUBLISH_FAILURES = Counter(
    f"{METRIC_PREFIX}api_publish_failures_total", "Records the broker did not acknowledge, by kind.", ["kind"]
)

Record = tuple[str, bytes, bytes, list[tuple[str, bytes]]]  # topic, key, value, headers


class Publisher:
    """Sends records and waits for their acknowledgement, within `timeout_seconds`."""

    def __init__(
        self, producer: Callable[[], AIOKafkaProducer], topics: TopicNames, timeout_seconds: float
    ) -> None:
        self._producer = producer
        self._topics = topics
        self._timeout = timeout_seconds

    async def _send_all(self, records: Sequence[Record]) -> None:
        producer = self._producer()
        futures = [
            await producer.send(topic, value=value, key=key, headers=headers)
            for topic, key, value, headers in records
        ]
        await asyncio.gather(*futures)

    async def _publish(self, kind: str, records: Sequence[Record]) -> None:
        try:
            await asyncio.wait_for(self._send_all(records), self._timeout)
        except (KafkaError, TimeoutError) as error:
            PUBLISH_FAILURES.labels(kind).inc(len(records))
            log.warning("publish_failed", kind=kind, records=len(records), error=type(error).__name__)
            raise UnavailableError(
                "broker_unavailable", "the event broker (Kafka) did not acknowledge the request; retry it"
            ) from None
        PUBLISHED.labels(kind).inc(len(records))

    async def envelope(self, envelope: EventEnvelope) -> None:
        """A CUSTOM envelope on the topic the trigger writes too, so dispatch is shared."""
        record = (
            self._topics.custom_events,
            envelope.partition_key,
            envelope.to_json_bytes(),
            envelope.kafka_headers(),
        )
        await self._publish("envelope", [record])

    async def dispatch_requests(self, requests: Sequence[DispatchRequest]) -> None:
        """Replays, recoveries and probes for the dispatcher; all acknowledged, or 503."""
        records: list[Record] = [
            (
                self._topics.dispatch_requests,
                request.key,
                request.to_json_bytes(),
                [("kind", request.kind.value.encode()), ("eventId", request.envelope.event_id.encode())],
            )
            for request in requests
        ]
        if records:
            await self._publish("dispatch_request", records)

    async def config_change(self, change: ConfigChange) -> bool:
        """The change after a MongoDB write; False (logged) when the broker did not take it."""
        record: Record = (self._topics.config_changes, change.key, change.to_json_bytes(), [])
        try:
            await self._publish("config_change", [record])
        except UnavailableError:
            log.warning(
                "config_change_unpublished",
                kind=change.kind.value,
                document_id=change.document_id,
                version=change.version,
            )
            return False
        return True
