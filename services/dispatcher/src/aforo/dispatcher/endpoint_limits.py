"""How many attempts run at once per endpoint, and when a saturated endpoint's new attempts are parked
instead of waiting in process memory (so one slow receiver cannot hold the consumer's capacity).

A limiter exists only while its endpoint has attempts waiting or running: the map never grows with
every endpoint ever seen.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass


@dataclass
class _Limiter:
    semaphore: asyncio.Semaphore
    waiting: int = 0
    running: int = 0


class EndpointLimits:
    def __init__(self, per_endpoint_concurrency: int, per_endpoint_backlog: int) -> None:
        self._concurrency = per_endpoint_concurrency
        self._backlog = per_endpoint_backlog
        self._limiters: dict[str, _Limiter] = {}

    def saturated(self, destination_id: str) -> bool:
        """Whether this endpoint already has its backlog of attempts waiting: park the next one."""
        limiter = self._limiters.get(destination_id)
        return limiter is not None and limiter.waiting >= self._backlog

    def slot(self, destination_id: str) -> EndpointSlot:
        """Wait for one of the endpoint's concurrent slots and hold it for the attempt (`async with`)."""
        return EndpointSlot(self, destination_id)

    def _limiter(self, destination_id: str) -> _Limiter:
        limiter = self._limiters.get(destination_id)
        if limiter is None:
            limiter = self._limiters[destination_id] = _Limiter(asyncio.Semaphore(self._concurrency))
        return limiter

    def _forget_if_idle(self, destination_id: str, limiter: _Limiter) -> None:
        if limiter.waiting == 0 and limiter.running == 0 and self._limiters.get(destination_id) is limiter:
            del self._limiters[destination_id]

    def tracked(self) -> int:
        """How many endpoints have a limiter now (for tests: idle ones are forgotten)."""
        return len(self._limiters)


class EndpointSlot:
    """One attempt's hold on one of its endpoint's slots. A class, not a generator-based context
    manager: it is entered once per delivery, and this costs a third of one."""

    __slots__ = ("_destination_id", "_limiter", "_limits")

    def __init__(self, limits: EndpointLimits, destination_id: str) -> None:
        self._limits = limits
        self._destination_id = destination_id
        self._limiter: _Limiter | None = None

    async def __aenter__(self) -> None:
        limiter = self._limits._limiter(self._destination_id)
        limiter.waiting += 1
        try:
            await limiter.semaphore.acquire()
        except BaseException:
            limiter.waiting -= 1  # cancelled while waiting: never held
            self._limits._forget_if_idle(self._destination_id, limiter)
            raise
        limiter.waiting -= 1
        limiter.running += 1
        self._limiter = limiter

    async def __aexit__(self, *exc_info: object) -> None:
        limiter = self._limiter
        if limiter is None:
            return
        self._limiter = None
        limiter.running -= 1
        limiter.semaphore.release()
        self._limits._forget_if_idle(self._destination_id, limiter)
