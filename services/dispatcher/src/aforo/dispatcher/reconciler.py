"""The reconciler: takes up deliveries whose next attempt nothing will bring back (see
`reconciliation` for when a delivery counts as stranded). The I/O edge of that decision.

Every replica runs one, every `reconcile_interval_seconds`. A stranded delivery goes through the
normal attempt path (reserve, send, log, park or settle): the reservation is a PENDING row with the
attempt's unique `_id`, so exactly one replica takes it and the others leave it to the winner.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from pymongo.errors import PyMongoError

from aforo.dispatcher.delivery_log import AttemptKey, attempt_row_id
from aforo.dispatcher.dispatch import AttemptJob, Dispatcher
from aforo.dispatcher.metrics import RECONCILED
from aforo.dispatcher.reconciliation import StrandedDelivery, candidate_cutoff, stranded_delivery
from aforo.shared.background import BackgroundTasks
from aforo.shared.collections import DELIVERY_LOGS, DELIVERY_STATE
from aforo.shared.delivery import ENVELOPE_FIELD
from aforo.shared.envelope import EventEnvelope
from aforo.shared.logging import bind_event_context, get_logger
from aforo.shared.mongo import MongoStore

log = get_logger(__name__)


class Reconciler:
    def __init__(
        self,
        dispatcher: Dispatcher,
        mongo: MongoStore,
        *,
        interval_seconds: float,
        minimum_overdue_seconds: float,
        batch_size: int = 200,
    ) -> None:
        self._dispatcher = dispatcher
        self._state = mongo.collection(DELIVERY_STATE.collection)
        self._logs = mongo.collection(DELIVERY_LOGS.collection)
        self._interval = interval_seconds
        self._minimum = minimum_overdue_seconds
        self._batch_size = batch_size
        self._loops = BackgroundTasks("reconciler")

    def start(self) -> None:
        self._loops.spawn("reconcile", self._run())

    def is_alive(self) -> bool:
        return self._loops.alive()

    async def stop(self) -> None:
        await self._loops.cancel_all()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.reconcile_once()
            except PyMongoError as error:
                log.warning("reconcile_failed", error=repr(error)[:500])  # the next pass tries again

    async def reconcile_once(self, now: datetime | None = None) -> int:
        """One pass: take up every stranded delivery found; returns how many this replica took."""
        now = now or datetime.now(UTC)
        cutoff = candidate_cutoff(now, self._minimum)
        candidates = [
            state
            async for state in self._state.find(
                {"status": "RETRYING", "nextAttemptAt": {"$lt": cutoff}}
            ).limit(self._batch_size)
        ]
        taken = 0
        for state in candidates:
            stranded = stranded_delivery(state, now, minimum_seconds=self._minimum)
            if stranded is not None and await self._take_up(stranded):
                taken += 1
        return taken

    async def _take_up(self, stranded: StrandedDelivery) -> bool:
        with bind_event_context(
            tenant_id=stranded.tenant_id,
            event_id=stranded.event_id,
            endpoint_id=stranded.endpoint_id,
            attempt=stranded.attempt,
        ):
            # The row of the attempt that failed last (its RETRYING row holds the envelope), by `_id`.
            last = AttemptKey(
                stranded.tenant_id,
                stranded.event_id,
                stranded.channel,
                stranded.endpoint_id,
                stranded.attempt - 1,
            )
            row = await self._logs.find_one({"_id": attempt_row_id(last)}, {ENVELOPE_FIELD: 1})
            stored = None if row is None else row.get(ENVELOPE_FIELD)
            if not isinstance(stored, str | bytes):
                log.error("reconcile_envelope_missing", reason=stranded.reason.value)
                return False
            body = stored.encode() if isinstance(stored, str) else stored
            try:
                envelope = EventEnvelope.from_json_bytes(body)
            except ValueError as error:
                log.error("reconcile_envelope_unreadable", error=str(error)[:300])
                return False
            job = AttemptJob(
                envelope,
                body,
                stranded.endpoint_id,
                stranded.attempt,
                reconcile=True,
                attempt_base=stranded.attempt_base,
                channel=stranded.channel,
            )
            if not await self._dispatcher.run_attempt(job):
                return False  # another replica (or the retry consumer) holds it now
            RECONCILED.labels(stranded.reason.value).inc()
            log.warning("delivery_reconciled", reason=stranded.reason.value)
            return True
