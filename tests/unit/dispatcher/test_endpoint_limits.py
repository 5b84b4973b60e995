"""Per-endpoint limits in the dispatcher: concurrency per endpoint, deferral past the backlog, and no
limiter kept for an endpoint once its attempts are done. The attempt itself is replaced by a stub."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aforo.dispatcher.dispatch import AttemptJob, Dispatcher
from aforo.dispatcher.settings import DispatcherSettings
from aforo.shared.envelope import EventEnvelope


def envelope() -> EventEnvelope:
    return EventEnvelope.model_validate(
        {
            "eventId": "evt-1",
            "eventType": "INVOICE_GENERATED",
            "category": "Billing",
            "severity": "INFO",
            "tenantId": "t1",
            "customerId": "c1",
            "occurredAt": "2026-01-01T00:00:00.000Z",
            "payload": {},
        }
    )


class StubbedDispatcher(Dispatcher):
    """Attempts block until released; parked attempts are recorded instead of produced."""

    def __init__(self, **settings: Any) -> None:
        super().__init__(
            settings=DispatcherSettings(**settings),
            producer=None,  # type: ignore[arg-type]
            session=None,  # type: ignore[arg-type]
            config=None,  # type: ignore[arg-type]
            cooldowns=None,  # type: ignore[arg-type]
            state=None,  # type: ignore[arg-type]
            log_writer=None,  # type: ignore[arg-type]
        )
        self.running: dict[str, int] = {}
        self.most_running: dict[str, int] = {}
        self.release = asyncio.Event()
        self.parked: list[AttemptJob] = []

    async def _claimed_attempt(self, job: AttemptJob) -> None:
        self.running[job.endpoint_id] = self.running.get(job.endpoint_id, 0) + 1
        self.most_running[job.endpoint_id] = max(
            self.most_running.get(job.endpoint_id, 0), self.running[job.endpoint_id]
        )
        try:
            await self.release.wait()
        finally:
            self.running[job.endpoint_id] -= 1

    async def park(self, job: AttemptJob, attempt: int, *, delay_seconds: float) -> None:
        self.parked.append(job)


def job(endpoint_id: str) -> AttemptJob:
    return AttemptJob(envelope(), b"{}", endpoint_id, 1)


async def test_each_endpoint_runs_at_most_its_concurrency_and_others_are_not_held_up() -> None:
    dispatcher = StubbedDispatcher(per_endpoint_concurrency=2, per_endpoint_backlog=100)
    attempts = [asyncio.create_task(dispatcher.run_attempt(job("slow"))) for _ in range(10)]
    attempts += [asyncio.create_task(dispatcher.run_attempt(job("other"))) for _ in range(2)]
    await asyncio.sleep(0.01)
    assert dispatcher.running == {"slow": 2, "other": 2}
    dispatcher.release.set()
    await asyncio.gather(*attempts)
    assert dispatcher.most_running == {"slow": 2, "other": 2}


async def test_attempts_past_the_backlog_are_parked_not_queued() -> None:
    dispatcher = StubbedDispatcher(per_endpoint_concurrency=1, per_endpoint_backlog=3)
    attempts = [asyncio.create_task(dispatcher.run_attempt(job("slow"))) for _ in range(10)]
    await asyncio.sleep(0.01)
    # One running, three waiting; the other six went to the delay topic.
    assert len(dispatcher.parked) == 6
    dispatcher.release.set()
    await asyncio.gather(*attempts)


async def test_no_limiter_is_kept_for_an_endpoint_without_attempts() -> None:
    dispatcher = StubbedDispatcher(per_endpoint_concurrency=2)
    dispatcher.release.set()
    await asyncio.gather(*(dispatcher.run_attempt(job(f"endpoint-{n}")) for n in range(1000)))
    assert dispatcher._limiters == {}


async def test_a_cancelled_waiting_attempt_leaves_no_limiter_behind() -> None:
    dispatcher = StubbedDispatcher(per_endpoint_concurrency=1)
    running = asyncio.create_task(dispatcher.run_attempt(job("e")))
    waiting = asyncio.create_task(dispatcher.run_attempt(job("e")))
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    dispatcher.release.set()
    await running
    assert dispatcher._limiters == {}
