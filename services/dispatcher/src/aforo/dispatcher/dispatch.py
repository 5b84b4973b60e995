"""The dispatch pipeline: one event in, deliveries out, every step logged. The orchestration.

The decisions are pure functions (`preferences`, `selection`, `retry_schedule`, `delivery_log`); the
I/O is behind the small interfaces of `ports` (configuration, cooldowns, the attempt ledger, the log
sink, the producer, one sender per channel). This module runs them in order:

1. the event's definition and the customer's preference → the channels to deliver on, or SKIPPED
   rows naming the gate (a cooldown is claimed atomically in MongoDB, so it holds across replicas);
2. the customer's endpoints → the subscribed, active ones, or SKIPPED rows;
3. per destination, attempt 1 now: unless it already happened (the ledger), send it, log its row;
   a retryable failure parks attempt n+1 on the delay topic of its tier; the last failure is FAILED
   and dead-lettered. Parked attempts come back through `run_attempt` from the retry consumer.

Idempotency without a write on the hot path: an attempt's delivery-log row is its record. An attempt
is not sent again when its row is stored or buffered, or while this process has it in flight; the
partition that carries an attempt's record is owned by one consumer at a time, so two replicas only
meet on replays and on the reconciler's take-ups, which reserve the attempt with a PENDING row first.
See docs/dispatch.md for what a crash at each step leaves.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from aforo.dispatcher.channels.pipeline import ChannelDispatch
from aforo.dispatcher.channels.planning import MANDATORY_UNREACHED, ChannelPlan
from aforo.dispatcher.consequences import Consequences
from aforo.dispatcher.delivery_log import (
    AttemptKey,
    AttemptVerdict,
    DeadLetterReason,
    DeliveryLogRow,
    Outcome,
    classify_response,
    judge_attempt,
)
from aforo.dispatcher.endpoint_limits import EndpointLimits
from aforo.dispatcher.metrics import ATTEMPT_SECONDS, DEFERRED, IN_FLIGHT, SKIPPED, deliveries_counted
from aforo.dispatcher.ports import (
    AttemptLedger,
    ChannelPlanner,
    ConfigurationSource,
    CooldownClaims,
    LogSink,
    Sender,
    Sent,
    Unusable,
)
from aforo.dispatcher.preferences import decide_preferences
from aforo.dispatcher.repositories import StateStatus, retrying_state, settled_state
from aforo.dispatcher.retry_schedule import retry_after_for
from aforo.dispatcher.selection import select_endpoints, webhook_test_target
from aforo.dispatcher.settings import DispatcherSettings
from aforo.shared.catalog import MANDATORY_EVENTS, WEBHOOK_TEST_EVENT
from aforo.shared.delivery import Channel, DeliveryStatus
from aforo.shared.envelope import EventEnvelope
from aforo.shared.logging import bind_event_context, get_logger

log = get_logger(__name__)

# A permanent failure that is not the receiver's answer: nothing to retry, nothing to dead-letter twice.
_UNDELIVERABLE = AttemptVerdict(Outcome.REFUSED, DeliveryStatus.FAILED)

PREVIOUS_ATTEMPT_POLL_SECONDS = 2.0
"""How long a retry whose previous attempt has no row yet waits on a delay topic before it looks again."""

WEBHOOK_ONLY = frozenset({Channel.WEBHOOK})
"""A decision with no other channel needs no channel plan (most events: no call, no rows to add)."""

RECENTLY_FINISHED = 100_000
"""Attempts this process finished lately, remembered so that a duplicate record of one is recognised
without asking the database (its row may still be in the log writer's buffer, or just flushed)."""


def _failed_without_destination(
    envelope: EventEnvelope, channel: Channel, error: str, now: datetime
) -> DeliveryLogRow:
    """A FAILED row no destination could take (nothing was attempted): never a silent drop."""
    return DeliveryLogRow.attempted(
        envelope,
        endpoint_id=None,
        attempt=1,
        verdict=_UNDELIVERABLE,
        created_at=now,
        error=error,
        channel=channel,
    )


@dataclass(frozen=True, slots=True)
class AttemptJob:
    """One attempt of one event at one destination; `body` is the envelope's exact bytes."""

    envelope: EventEnvelope
    body: bytes
    endpoint_id: str
    """The webhook endpoint, or for EMAIL/SMS/PAGERDUTY the contact destination."""
    attempt: int
    replay: bool = False
    reconcile: bool = False
    """Taken up by the reconciler: reserve it first (another replica may be taking it up too)."""
    attempt_base: int = 0
    """Where this chain's retry budget started (a replay of a FAILED delivery starts a new one)."""
    channel: Channel = Channel.WEBHOOK
    waiting_since: datetime | None = None
    """A retry parked again to wait for its previous attempt's row: since when it has waited."""
    unseen: bool = False
    """Its record was never started by any process (`partition_marks`): no row of it can exist, so
    the ledger is not asked. Only the event consumer's attempt 1 is ever unseen."""

    def key(self, attempt: int | None = None) -> AttemptKey:
        envelope = self.envelope
        number = self.attempt if attempt is None else attempt
        return AttemptKey(envelope.tenant_id, envelope.event_id, self.channel, self.endpoint_id, number)


@dataclass
class Dispatcher:
    settings: DispatcherSettings
    config: ConfigurationSource
    cooldowns: CooldownClaims
    ledger: AttemptLedger
    log_sink: LogSink
    consequences: Consequences
    senders: Mapping[Channel, Sender]
    channel_planner: ChannelPlanner | None = None
    """Which contact destinations an event reaches on EMAIL/SMS/PAGERDUTY (docs/channels.md)."""
    limits: EndpointLimits = field(init=False)
    _in_flight: set[AttemptKey] = field(default_factory=set)
    _finished: OrderedDict[AttemptKey, str] = field(default_factory=OrderedDict)
    """The status of every attempt this process logged lately (bounded): its rows, flushed or not.
    An OrderedDict: dropping the oldest of a plain dict (`next(iter(...))`) walks the slots its
    earlier deletions left, ~40 µs per attempt once 100,000 are remembered."""

    def __post_init__(self) -> None:
        self.limits = EndpointLimits(
            self.settings.per_endpoint_concurrency, self.settings.per_endpoint_backlog
        )

    # ---- events -------------------------------------------------------------------------------

    async def dispatch_event(
        self,
        envelope: EventEnvelope,
        body: bytes,
        *,
        target_endpoint_id: str | None = None,
        unseen: bool = False,
    ) -> None:
        """Run the gates for one SYSTEM/CUSTOM event (or `webhook.test`) and attempt 1 per endpoint;
        `unseen`: its record was never started before (no idempotency lookup needed)."""
        now = datetime.now(UTC)
        definition = await self.config.definition(envelope.tenant_id, envelope.event_type)
        if definition is None:
            await self.consequences.dead_letter(
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
            if channel not in self.senders:
                # No sender for this channel in this build: say so in the log rather than drop silently.
                self._log(
                    _failed_without_destination(
                        envelope, channel, f"no {channel.value} sender is configured", now
                    ),
                    body,
                )
        jobs: list[AttemptJob] = []
        if Channel.WEBHOOK in decision.deliver:
            if target_endpoint_id is None and envelope.event_type == WEBHOOK_TEST_EVENT:
                target_endpoint_id = webhook_test_target(envelope)
            endpoints = await self.config.endpoints(envelope.tenant_id, envelope.customer_id)
            try:
                selection = select_endpoints(envelope, endpoints, target_endpoint_id=target_endpoint_id)
            except ValueError as error:
                await self.consequences.dead_letter(body, target_endpoint_id, "invalid_target", str(error), 0)
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
            jobs += [
                AttemptJob(envelope, body, endpoint.endpoint_id, 1, unseen=unseen)
                for endpoint in selection.deliver
            ]
        plan = ChannelPlan()
        if self.channel_planner is not None and not decision.deliver <= WEBHOOK_ONLY:
            plan = await self.channel_planner.plan(envelope, frozenset(decision.deliver & set(self.senders)))
            jobs += [
                AttemptJob(envelope, body, destination.destination_id, 1, channel=channel, unseen=unseen)
                for channel, destination in plan.deliver
            ]
        # A mandatory event must reach someone: reaching no one is a FAILED row, never silence.
        unreached = envelope.event_type in MANDATORY_EVENTS and not jobs
        if plan.no_destination or plan.not_configured or unreached:
            for row in ChannelDispatch.plan_rows(envelope, plan, now=now, mandatory_unreached=unreached):
                self._log(row, body)
        if unreached and Channel.WEBHOOK in decision.deliver:
            self._log(
                _failed_without_destination(envelope, Channel.WEBHOOK, MANDATORY_UNREACHED, now),
                body,
            )
        if len(jobs) == 1:
            await self.run_attempt(jobs[0])  # the common case, without a task of its own
        elif jobs:
            await asyncio.gather(*(self.run_attempt(job) for job in jobs))

    async def replay(
        self, envelope: EventEnvelope, body: bytes, endpoint_id: str, channel: Channel = Channel.WEBHOOK
    ) -> None:
        """A replay or recovery from the API: new attempts with a fresh budget, same eventId."""
        await self.run_attempt(AttemptJob(envelope, body, endpoint_id, 0, replay=True, channel=channel))

    # ---- attempts -----------------------------------------------------------------------------

    async def run_attempt(self, job: AttemptJob) -> bool:
        """Send, log and follow up one attempt unless it already happened; park the next one or
        dead-letter the last. Returns whether this call made the attempt."""
        if not job.replay and not job.reconcile and self.limits.saturated(job.endpoint_id):
            # This endpoint is saturated: park the attempt so other endpoints keep moving.
            DEFERRED.inc()
            await self.consequences.park(
                job.envelope,
                job.body,
                job.endpoint_id,
                job.attempt,
                delay_seconds=1.0,
                attempt_base=job.attempt_base,
                channel=job.channel,
            )
            return False
        if job.replay or job.reconcile:
            # A reservation's lease runs from its insert: it is made once the slot is ours, so it
            # never ages while the attempt waits behind a slow receiver's other attempts.
            async with self.limits.slot(job.endpoint_id):
                admitted = await self._admit(job)
                if admitted is None:
                    return False
                try:
                    await self._send_admitted(job, *admitted)
                finally:
                    self._in_flight.discard(admitted[0])
            return True
        # Otherwise the endpoint's slot is held for the send only: the checks (a database round trip
        # at times) do not take a receiver's concurrency from attempts that are ready.
        admitted = await self._admit(job)
        if admitted is None:
            return False
        try:
            async with self.limits.slot(job.endpoint_id):
                await self._send_admitted(job, *admitted)
        finally:
            self._in_flight.discard(admitted[0])  # also when cancelled while waiting for the slot
        return True

    async def _admit(self, job: AttemptJob) -> tuple[AttemptKey, int] | None:
        """Whether this attempt is to be made here and now: its key, in flight from now on, and the
        start of its retry budget; None if it happened already, runs elsewhere, or must wait."""
        envelope = job.envelope
        now = datetime.now(UTC)
        attempt, attempt_base = job.attempt, job.attempt_base
        if job.replay:
            latest = await self.ledger.latest(
                envelope.tenant_id, envelope.event_id, job.channel, job.endpoint_id
            )
            if latest is not None and latest.status not in (
                DeliveryStatus.FAILED.value,
                DeliveryStatus.PENDING.value,
            ):
                return None  # delivered, or a chain is still running: nothing to replay
            attempt_base = 0 if latest is None else latest.attempt
            attempt = attempt_base + 1
            if latest is not None and latest.status == DeliveryStatus.PENDING.value:
                attempt, attempt_base = latest.attempt, latest.attempt - 1  # an abandoned replay: take over
        key = job.key(attempt)
        if key in self._in_flight or key in self._finished or self.log_sink.holds(key):
            return None
        # In flight from here on, before the first await: a second copy of this attempt in this
        # process (a duplicate record) stops at the check above instead of racing this one.
        self._in_flight.add(key)
        admitted = False
        try:
            is_retry = not job.replay and not job.reconcile and attempt > attempt_base + 1
            if is_retry and not await self._previous_attempt_allows(job, key, now):
                return None
            if job.replay or job.reconcile:
                stale_before = now - timedelta(seconds=self.settings.lease_seconds)
                pending = DeliveryLogRow.pending(
                    envelope,
                    endpoint_id=job.endpoint_id,
                    attempt=attempt,
                    created_at=now,
                    channel=job.channel,
                )
                if not await self.ledger.reserve(key, pending, job.body, stale_before):
                    return None
            elif not job.unseen and await self.ledger.recorded(key):
                return None
            admitted = True
            return key, attempt_base
        finally:
            if not admitted:
                self._in_flight.discard(key)

    async def _previous_attempt_allows(self, job: AttemptJob, key: AttemptKey, now: datetime) -> bool:
        """A retry goes out only after its previous attempt's row says RETRYING.

        Why: a crash between parking attempt n+1 and flushing attempt n's row makes attempt n run
        again (its record is read again) while the parked n+1 waits; if the second run of n is
        delivered, n+1 must not go out too. So: previous attempt DELIVERED or FAILED, the delivery is
        over; no row yet, attempt n is still (again) under way somewhere: wait for it, parked, up to
        `previous_attempt_wait_seconds`, after which the retry goes out (a lost row must not strand it).
        """
        previous = key._replace(attempt=key.attempt - 1)
        status = self._finished.get(previous) or await self.ledger.status(previous)
        if status == DeliveryStatus.RETRYING.value:
            return True
        if status is not None and status != DeliveryStatus.PENDING.value:
            return False  # DELIVERED or FAILED: the delivery has ended
        waiting_since = job.waiting_since or now
        if now - waiting_since < timedelta(seconds=self.settings.previous_attempt_wait_seconds):
            await self.consequences.park(
                job.envelope,
                job.body,
                job.endpoint_id,
                key.attempt,
                delay_seconds=PREVIOUS_ATTEMPT_POLL_SECONDS,
                attempt_base=job.attempt_base,
                channel=job.channel,
                waiting_since=waiting_since,
            )
            return False
        log.warning("retry_sent_without_previous_row", attempt=key.attempt, event_id=key.event_id)
        return True

    async def _send_admitted(self, job: AttemptJob, key: AttemptKey, attempt_base: int) -> None:
        """Send an admitted attempt and conclude it, its ids bound for every line logged meanwhile."""
        with bind_event_context(
            tenant_id=job.envelope.tenant_id,
            event_id=job.envelope.event_id,
            endpoint_id=job.endpoint_id,
            attempt=key.attempt,
        ):
            sender = self.senders.get(job.channel)
            if sender is None:
                await self._undeliverable(job, key, f"no {job.channel.value} sender is configured")
                return
            IN_FLIGHT.inc()
            try:
                sent = await sender.send(job.envelope, job.body, job.endpoint_id, key.attempt)
            finally:
                IN_FLIGHT.dec()
            if isinstance(sent, Unusable):
                await self._undeliverable(job, key, sent.reason, sent)
                return
            ATTEMPT_SECONDS.observe(sent.duration_ms / 1000)
            await self._conclude(job, key, attempt_base, sent)

    async def _undeliverable(
        self, job: AttemptJob, key: AttemptKey, reason: str, unusable: Unusable | None = None
    ) -> None:
        """The destination cannot take this attempt (deleted, deactivated, no secret): FAILED, no retry."""
        envelope, now = job.envelope, datetime.now(UTC)
        row = DeliveryLogRow.attempted(
            envelope,
            endpoint_id=job.endpoint_id,
            attempt=key.attempt,
            verdict=_UNDELIVERABLE,
            created_at=now,
            error=reason,
            channel=job.channel,
        ).with_facts(None if unusable is None else unusable.facts)
        self._log(row, job.body)
        self._settle(key, StateStatus.FAILED, now)
        await self.consequences.dead_letter(
            job.body, job.endpoint_id, "endpoint_unavailable", reason, key.attempt
        )
        log.warning("delivery_failed", error=reason, reason="endpoint_unavailable")

    async def _conclude(self, job: AttemptJob, key: AttemptKey, attempt_base: int, sent: Sent) -> None:
        envelope = job.envelope
        now = datetime.now(UTC)
        outcome = sent.outcome or classify_response(sent.status, sent.error)
        retry_after = (
            sent.retry_after_seconds
            if sent.retry_after_seconds is not None
            else retry_after_for(sent.status, sent.retry_after, now)
        )
        verdict = judge_attempt(
            key.attempt - attempt_base,
            outcome,
            sent.retry_config,
            retry_after,
            self.settings.max_retry_after_seconds,
        )
        row = DeliveryLogRow.attempted(
            envelope,
            endpoint_id=job.endpoint_id,
            attempt=key.attempt,
            verdict=verdict,
            created_at=now,
            response_status=sent.status,
            response_body=sent.response_body,
            error=sent.error,
            duration_ms=sent.duration_ms,
            channel=job.channel,
            body_limit_bytes=self.settings.response_body_limit_bytes,
        ).with_facts(sent.facts)
        if verdict.retry is not None:
            next_attempt = attempt_base + verdict.retry.attempt
            # Parked first: once the row says RETRYING, the next attempt is on its delay topic.
            await self.consequences.park(
                envelope,
                job.body,
                job.endpoint_id,
                next_attempt,
                delay_seconds=verdict.retry.delay_seconds,
                attempt_base=attempt_base,
                channel=job.channel,
            )
            self._log(row, job.body)
            assert row.next_attempt_at is not None
            self.log_sink.add_state_update(retrying_state(key, attempt_base, row.next_attempt_at, now))
            log.info(
                "delivery_retrying",
                status=sent.status,
                error=sent.error,
                detail=sent.detail,
                delay=verdict.retry.delay_seconds,
            )
            return
        self._log(row, job.body)
        if verdict.status is DeliveryStatus.DELIVERED:
            self._settle(key, StateStatus.DELIVERED, now)
            if self.settings.log_each_delivery:
                log.info("delivery_delivered", status=sent.status, duration_ms=round(sent.duration_ms, 1))
            return
        self._settle(key, StateStatus.FAILED, now)
        reason = (verdict.dead_letter_reason or DeadLetterReason.RETRIES_EXHAUSTED).value
        await self.consequences.dead_letter(job.body, job.endpoint_id, reason, sent.error or "", key.attempt)
        log.warning(
            "delivery_failed", status=sent.status, error=sent.error, detail=sent.detail, reason=reason
        )
        if verdict.disable_endpoint:
            await self.consequences.disable_endpoint(
                envelope.tenant_id, job.endpoint_id, f"receiver answered {sent.status}", now
            )

    # ---- side effects -------------------------------------------------------------------------

    def _settle(self, key: AttemptKey, status: StateStatus, now: datetime) -> None:
        """A delivery that was retried (or replayed) reached its end: its state says so, with the row.

        A first attempt that ends at once has no state record (nothing is owed): it writes nothing."""
        if key.attempt > 1:
            self.log_sink.add_state_update(settled_state(key, status, now))

    def _log(self, row: DeliveryLogRow, body: bytes) -> None:
        if row.attempt > 0:
            self._finished[row.key] = row.status.value
            if len(self._finished) > RECENTLY_FINISHED:
                self._finished.popitem(last=False)
        deliveries_counted(row.status.value, row.channel.value).inc()
        if row.skip_reason is not None:
            SKIPPED.labels(row.skip_reason.value).inc()
        self.log_sink.add(row, body)
