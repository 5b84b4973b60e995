"""What follows an attempt besides its row: parking the next attempt on a delay topic, dead-lettering
what will not be delivered, disabling an endpoint that answered 410 Gone. Kafka and configuration
writes, each awaited until acknowledged (an attempt's record is committed only after they are)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aforo.dispatcher.metrics import DEAD_LETTERED, RETRIES_SCHEDULED
from aforo.dispatcher.ports import ConfigurationSource, RecordProducer
from aforo.dispatcher.retry_schedule import RetryRecordHeaders, retry_topic_for
from aforo.shared.config_changes import ConfigChange, ConfigKind, ConfigOperation
from aforo.shared.dead_letters import DeadLetterHeaders
from aforo.shared.delivery import ENVELOPE_FIELD, Channel
from aforo.shared.envelope import EventEnvelope
from aforo.shared.kafka import TopicNames
from aforo.shared.logging import get_logger

log = get_logger(__name__)

REPLAY_HEADER = "aforo-replay"


class Consequences:
    def __init__(self, producer: RecordProducer, config: ConfigurationSource, topics: TopicNames) -> None:
        self._producer = producer
        self._config = config
        self._topics = topics

    async def park(
        self,
        envelope: EventEnvelope,
        body: bytes,
        destination_id: str,
        attempt: int,
        *,
        delay_seconds: float,
        attempt_base: int = 0,
        channel: Channel = Channel.WEBHOOK,
        replay: bool = False,
        waiting_since: datetime | None = None,
    ) -> None:
        """Put an attempt on the delay topic of its tier; returns once the broker has it."""
        due = datetime.now(UTC) + timedelta(seconds=delay_seconds)
        topic = retry_topic_for(delay_seconds, self._topics.prefix)
        headers = RetryRecordHeaders(
            destination_id,
            max(1, attempt),
            due,
            attempt_base=attempt_base,
            channel=channel,
            waiting_since=waiting_since,
        ).to_kafka()
        if replay and attempt == 0:
            headers.append((REPLAY_HEADER, b"1"))
        await self._producer.send_and_wait(topic, body, key=envelope.partition_key, headers=headers)
        RETRIES_SCHEDULED.labels(topic).inc()

    async def dead_letter(
        self, body: bytes, destination_id: str | None, reason: str, error: str, attempts: int
    ) -> None:
        DEAD_LETTERED.labels(reason).inc()
        extra = [("aforo-attempts", str(attempts))]
        if destination_id is not None:
            extra.append(("aforo-endpoint-id", destination_id))
        headers = DeadLetterHeaders(reason, error, extra=tuple(extra)).to_kafka()
        await self._producer.send_and_wait(self._topics.dispatch_dead_letter, body, headers=headers)

    async def dead_letter_row(self, document: dict[str, Any], reason: str) -> None:
        """A delivery-log row the database refused: its envelope and why, on the dispatch DLQ."""
        stored = document.get(ENVELOPE_FIELD)
        body = stored.encode() if isinstance(stored, str) else bytes(stored or b"")
        endpoint_id = document.get("endpointId")
        log.error(
            "delivery_log_row_dead_lettered",
            event_id=document.get("eventId"),
            status=document.get("status"),
            attempt=document.get("attempt"),
            reason=reason,
        )
        await self.dead_letter(
            body,
            str(endpoint_id) if endpoint_id else None,
            "log_row_unstorable",
            f"{document.get('status')} row of attempt {document.get('attempt')} not stored: {reason}",
            int(document.get("attempt") or 0),
        )

    async def disable_endpoint(self, tenant_id: str, endpoint_id: str, reason: str, now: datetime) -> None:
        """A receiver answered 410 Gone: deactivate the endpoint and tell the other processes."""
        document = await self._config.disable_endpoint(tenant_id, endpoint_id, reason, now)
        if document is None:
            return
        change = ConfigChange(
            kind=ConfigKind.WEBHOOK_ENDPOINT,
            tenant_id=tenant_id,
            document_id=endpoint_id,
            operation=ConfigOperation.UPSERT,
            version=int(document.get("version", 0)),
            document=document,
            changed_at=now,
        )
        await self._producer.send_and_wait(
            self._topics.config_changes, change.to_json_bytes(), key=change.key
        )
        log.warning("endpoint_disabled", reason=reason)
