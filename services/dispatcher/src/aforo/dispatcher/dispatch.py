"""The dispatch pipeline: one event in, signed deliveries out, every step logged. The I/O edge.

The decisions are pure functions (`preferences`, `selection`, `retry_schedule`, `delivery_log`);
this module runs them in order against MongoDB, the network and Kafka:

1. the event's definition and the customer's preference → the channels to deliver on, or SKIPPED
   rows naming the gate (a cooldown is claimed atomically in MongoDB, so it holds across replicas);
2. the customer's endpoints → the subscribed, active ones, or SKIPPED rows;
3. per endpoint, attempt 1 now: claim it (idempotency), sign, POST, log the row; a retryable
   failure parks attempt n+1 on the delay topic of its tier; the last failure is FAILED and
   dead-lettered. Delayed attempts come back through `run_attempt` from the retry consumer.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from aiokafka import AIOKafkaProducer

from aforo.dispatcher.delivery_log import (
    AttemptVerdict,
    DeadLetterReason,
    DeliveryLogRow,
    Outcome,
    classify_response,
    judge_attempt,
)
from aforo.dispatcher.log_writer import DeliveryLogWriter
from aforo.dispatcher.metrics import (
    ATTEMPT_SECONDS,
    DEAD_LETTERED,
    DEFERRED,
    DELIVERIES,
    IN_FLIGHT,
    RETRIES_SCHEDULED,
    SKIPPED,
)
from aforo.dispatcher.preferences import decide_preferences
from aforo.dispatcher.repositories import (
    ClaimStatus,
    ConfigurationReader,
    CooldownStore,
    DeliveryStateStore,
    EndpointRecord,
    StateStatus,
)
from aforo.dispatcher.retry_schedule import RetryConfig, RetryRecordHeaders, retry_after_for, retry_topic_for
from aforo.dispatcher.selection import select_endpoints, webhook_test_target
from aforo.dispatcher.settings import DispatcherSettings
from aforo.dispatcher.webhook_sender import AttemptResult, send_webhook
from aforo.shared.catalog import WEBHOOK_TEST_EVENT
from aforo.shared.config_changes import ConfigChange, ConfigKind, ConfigOperation
from aforo.shared.dead_letters import DeadLetterHeaders
from aforo.shared.delivery import ENVELOPE_FIELD, Channel, DeliveryStatus
from aforo.shared.envelope import EventEnvelope
from aforo.shared.kafka import TopicNames
from aforo.shared.logging import bind_event_context, get_logger

log = get_logger(__name__)


# A permanent failure that is not the receiver's answer: nothing to retry, nothing to dead-letter twice.
_UNDELIVERABLE = AttemptVerdict(Outcome.REFUSED, DeliveryStatus.FAILED)


@dataclass
class _EndpointLimiter:
    semaphore: asyncio.Semaphore
    waiting: int = 0
    running: int = 0


@dataclass(frozen=True, slots=True)
class AttemptJob:
    """One attempt of one event at one endpoint; `body` is the envelope's exact bytes."""

    envelope: EventEnvelope
    body: bytes
    endpoint_id: str
    attempt: int
    replay: bool = False
    reconcile: bool = False
    """Taken up by the reconciler: if another owner holds it, leave it to them (park nothing)."""


@dataclass
class Dispatcher:
    settings: DispatcherSettings
    producer: AIOKafkaProducer
    session: aiohttp.ClientSession
    config: ConfigurationReader
    cooldowns: CooldownStore
    state: DeliveryStateStore
    log_writer: DeliveryLogWriter
    topics: TopicNames = field(init=False)
    _limiters: dict[str, _EndpointLimiter] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.topics = TopicNames(self.settings.topic_prefix)

    # ---- events -------------------------------------------------------------------------------

    async def dispatch_event(
        self, envelope: EventEnvelope, body: bytes, *, target_endpoint_id: str | None = None
    ) -> None:
        """Run the gates for one SYSTEM/CUSTOM event (or `webhook.test`) and attempt 1 per endpoint."""
        now = datetime.now(UTC)
        definition = await self.config.definition(envelope.tenant_id, envelope.event_type)
        if definition is None:
            await self.dead_letter(
                body, None, "unknown_event_type", f"no definition of {envelope.event_type!r}", 0
            )
            return
        preference = None
        if envelope.event_type != WEBHOOK_TEST_EVENT:
            preference = await self.config.preference(
                envelope.tenant_id, envelope.customer_id, envelope.event_type
            )
        decision = decide_preferences(envelope, definition, preference, now=now)
        if decision.cooldown_claim is not None and not await self.cooldowns.claim(decision.cooldown_claim):
            decision = decision.cooldown_lost()
        for skip in decision.skipped:
            self._log(
                DeliveryLogRow.skipped(
                    envelope, skip.channel, skip.reason, created_at=now, detail=skip.detail
                ),
                body,
            )
        for channel in sorted(decision.deliver - {Channel.WEBHOOK}):
            # Email, SMS and PagerDuty senders are not built yet: say so in the log rather than drop silently.
            self._log(
                DeliveryLogRow.attempted(
                    envelope,
                    endpoint_id=None,
                    attempt=1,
                    verdict=_UNDELIVERABLE,
                    created_at=now,
                    error=f"no {channel.value} sender is configured",
                    channel=channel,
                ),
                body,
            )
        if Channel.WEBHOOK not in decision.deliver:
            return
        if target_endpoint_id is None and envelope.event_type == WEBHOOK_TEST_EVENT:
            target_endpoint_id = webhook_test_target(envelope)
        endpoints = await self.config.endpoints(envelope.tenant_id, envelope.customer_id)
        try:
            selection = select_endpoints(envelope, endpoints, target_endpoint_id=target_endpoint_id)
        except ValueError as error:
            await self.dead_letter(body, target_endpoint_id, "invalid_target", str(error), 0)
            return
        for endpoint_skip in selection.skipped:
            self._log(
                DeliveryLogRow.skipped(
                    envelope,
                    Channel.WEBHOOK,
                    endpoint_skip.reason,
                    created_at=now,
                    endpoint_id=endpoint_skip.endpoint.endpoint_id,
                ),
                body,
            )
        if selection.foreign_endpoint_ids:
            log.error("foreign_endpoints_ignored", endpoint_ids=list(selection.foreign_endpoint_ids))
        await asyncio.gather(
            *(
                self.run_attempt(AttemptJob(envelope, body, endpoint.endpoint_id, 1))
                for endpoint in selection.deliver
            )
        )

    async def replay(self, envelope: EventEnvelope, body: bytes, endpoint_id: str) -> None:
        """A replay or recovery from the API: new attempts with a fresh budget, same eventId."""
        await self.run_attempt(AttemptJob(envelope, body, endpoint_id, 0, replay=True))

    # ---- attempts -----------------------------------------------------------------------------

    async def run_attempt(self, job: AttemptJob) -> bool:
        """Claim, send, log and settle one attempt; park the next one or dead-letter the last.

        Returns whether this call claimed the attempt (False: deferred, done, or owned elsewhere).
        """
        limiter = self._limiters.setdefault(
            job.endpoint_id, _EndpointLimiter(asyncio.Semaphore(self.settings.per_endpoint_concurrency))
        )
        if limiter.waiting >= self.settings.per_endpoint_backlog and not job.replay:
            # This endpoint is saturated: park the attempt (unclaimed) so other endpoints keep moving.
            DEFERRED.inc()
            await self.park(job, job.attempt, delay_seconds=1.0)
            return False
        limiter.waiting += 1
        entered = False
        try:
            async with limiter.semaphore:
                limiter.waiting -= 1
                entered = True
                limiter.running += 1
                try:
                    return await self._claimed_attempt(job)
                finally:
                    limiter.running -= 1
        finally:
            if not entered:
                limiter.waiting -= 1
            if (
                limiter.waiting == 0
                and limiter.running == 0
                and self._limiters.get(job.endpoint_id) is limiter
            ):
                # Idle: forget it, so the map holds only endpoints with attempts under way.
                del self._limiters[job.endpoint_id]

    async def _claimed_attempt(self, job: AttemptJob) -> bool:
        envelope = job.envelope
        now = datetime.now(UTC)
        token = uuid.uuid4().hex
        lease_until = now + timedelta(seconds=self.settings.lease_seconds)
        claim = await self.state.claim(
            envelope.tenant_id,
            envelope.event_id,
            job.endpoint_id,
            job.attempt,
            token,
            now,
            lease_until,
            replay=job.replay,
        )
        if claim.status is ClaimStatus.DONE:
            return False
        if claim.status is ClaimStatus.BUSY and job.reconcile:
            return False
        if claim.status is ClaimStatus.BUSY:
            # Another owner holds the attempt; look again once its lease has run out.
            assert claim.lease_until is not None
            wait = max(1.0, (claim.lease_until - now).total_seconds() + 0.5)
            await self.park(job, job.attempt, delay_seconds=wait)
            return False
        attempt = claim.attempt
        with bind_event_context(
            tenant_id=envelope.tenant_id,
            event_id=envelope.event_id,
            endpoint_id=job.endpoint_id,
            attempt=attempt,
        ):
            await self._send_claimed(job, attempt, claim.attempt_base, token)
        return True

    async def _send_claimed(self, job: AttemptJob, attempt: int, attempt_base: int, token: str) -> None:
        envelope = job.envelope
        endpoint = await self.config.endpoint(envelope.tenant_id, job.endpoint_id)
        secrets = [] if endpoint is None else endpoint.secrets_at(datetime.now(UTC))
        unusable = _unusable(endpoint, secrets, envelope.event_type)
        if unusable is not None or endpoint is None:
            await self._undeliverable(job, attempt, token, unusable or "endpoint was deleted")
            return
        IN_FLIGHT.inc()
        try:
            result = await send_webhook(
                self.session,
                url=endpoint.view.url,
                body=job.body,
                secrets=secrets,
                event_id=envelope.event_id,
                event_type=envelope.event_type,
                attempt=attempt,
                timeout_seconds=self.settings.attempt_timeout_seconds,
                response_body_limit=self.settings.response_body_limit_bytes,
            )
        finally:
            IN_FLIGHT.dec()
        ATTEMPT_SECONDS.observe(result.duration_ms / 1000)
        await self._conclude(job, attempt, attempt_base, token, result, endpoint.view.retry_config)

    async def _undeliverable(self, job: AttemptJob, attempt: int, token: str, reason: str) -> None:
        """The endpoint cannot take this attempt (deleted, deactivated, no secret): FAILED, no retry."""
        envelope, now = job.envelope, datetime.now(UTC)
        row = DeliveryLogRow.attempted(
            envelope,
            endpoint_id=job.endpoint_id,
            attempt=attempt,
            verdict=_UNDELIVERABLE,
            created_at=now,
            error=reason,
        )
        self._log(row, job.body)
        self._settle(job, token, StateStatus.FAILED, now, lastError=reason)
        await self.dead_letter(job.body, job.endpoint_id, "endpoint_unavailable", reason, attempt)
        log.warning("delivery_failed", error=reason, reason="endpoint_unavailable")

    async def _conclude(
        self,
        job: AttemptJob,
        attempt: int,
        attempt_base: int,
        token: str,
        result: AttemptResult,
        retry_config: RetryConfig,
    ) -> None:
        envelope = job.envelope
        now = datetime.now(UTC)
        outcome = classify_response(result.status, result.error)
        retry_after = retry_after_for(result.status, result.retry_after, now)
        verdict = judge_attempt(
            attempt - attempt_base, outcome, retry_config, retry_after, self.settings.max_retry_after_seconds
        )
        row = DeliveryLogRow.attempted(
            envelope,
            endpoint_id=job.endpoint_id,
            attempt=attempt,
            verdict=verdict,
            created_at=now,
            response_status=result.status,
            response_body=result.response_body,
            body_limit_bytes=self.settings.response_body_limit_bytes,
            error=result.error,
            duration_ms=result.duration_ms,
        )
        if verdict.retry is not None:
            next_attempt = attempt_base + verdict.retry.attempt
            await self.park(job, next_attempt, delay_seconds=verdict.retry.delay_seconds)
            self._log(row, job.body)
            self._settle(job, token, StateStatus.RETRYING, now, nextAttemptAt=row.next_attempt_at)
            log.info(
                "delivery_retrying",
                status=result.status,
                error=result.error,
                detail=result.detail,
                delay=verdict.retry.delay_seconds,
            )
            return
        self._log(row, job.body)
        if verdict.status is DeliveryStatus.DELIVERED:
            self._settle(job, token, StateStatus.DELIVERED, now)
            log.info("delivery_delivered", status=result.status, duration_ms=round(result.duration_ms, 1))
            return
        self._settle(job, token, StateStatus.FAILED, now, lastError=result.error)
        reason = (verdict.dead_letter_reason or DeadLetterReason.RETRIES_EXHAUSTED).value
        await self.dead_letter(job.body, job.endpoint_id, reason, result.error or "", attempt)
        log.warning(
            "delivery_failed", status=result.status, error=result.error, detail=result.detail, reason=reason
        )
        if verdict.disable_endpoint:
            await self._disable(
                envelope.tenant_id, job.endpoint_id, f"receiver answered {result.status}", now
            )

    # ---- side effects -------------------------------------------------------------------------

    def _settle(self, job: AttemptJob, token: str, status: StateStatus, now: datetime, **fields: Any) -> None:
        """Settle the attempt's idempotency record in the same flush as its row (see log_writer)."""
        envelope = job.envelope
        self.log_writer.add_state_update(
            self.state.settle(
                envelope.tenant_id, envelope.event_id, job.endpoint_id, token, status, now, **fields
            )
        )

    async def park(self, job: AttemptJob, attempt: int, *, delay_seconds: float) -> None:
        """Put an attempt on the delay topic of its tier; returns once the broker has it."""
        due = datetime.now(UTC) + timedelta(seconds=delay_seconds)
        topic = retry_topic_for(delay_seconds, self.settings.topic_prefix)
        headers = RetryRecordHeaders(job.endpoint_id, max(1, attempt), due).to_kafka()
        if job.replay and attempt == 0:
            headers.append(("aforo-replay", b"1"))
        await self.producer.send_and_wait(topic, job.body, key=job.envelope.partition_key, headers=headers)
        RETRIES_SCHEDULED.labels(topic).inc()

    async def dead_letter(
        self, body: bytes, endpoint_id: str | None, reason: str, error: str, attempts: int
    ) -> None:
        DEAD_LETTERED.labels(reason).inc()
        extra = [("aforo-attempts", str(attempts))]
        if endpoint_id is not None:
            extra.append(("aforo-endpoint-id", endpoint_id))
        headers = DeadLetterHeaders(reason, error, extra=tuple(extra)).to_kafka()
        await self.producer.send_and_wait(self.topics.dispatch_dead_letter, body, headers=headers)

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

    async def _disable(self, tenant_id: str, endpoint_id: str, reason: str, now: datetime) -> None:
        document = await self.config.disable_endpoint(tenant_id, endpoint_id, reason, now)
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
        await self.producer.send_and_wait(self.topics.config_changes, change.to_json_bytes(), key=change.key)
        log.warning("endpoint_disabled", reason=reason)

    def _log(self, row: DeliveryLogRow, body: bytes) -> None:
        DELIVERIES.labels(row.status.value, row.channel.value).inc()
        if row.skip_reason is not None:
            SKIPPED.labels(row.skip_reason.value).inc()
        self.log_writer.add(row, body)


def _unusable(endpoint: EndpointRecord | None, secrets: list[str], event_type: str) -> str | None:
    """Why an endpoint cannot take an attempt now, if it cannot. An explicit test reaches an inactive one."""
    if endpoint is None:
        return "endpoint was deleted"
    if not secrets:
        return "endpoint has no valid signing secret"
    if not endpoint.view.active and event_type != WEBHOOK_TEST_EVENT:
        return "endpoint is inactive"
    return None
