"""How many attempts run at once per endpoint, and when a saturated endpoint's new attempts are parked
instead of waiting in process memory (so one slow receiver cannot hold the consumer's capacity).

A limiter exists only while its endpoint has attempts waiting or running: the map never grows with
every endpoint ever seen.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
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

    @asynccontextmanager
    async def slot(self, destination_id: str) -> AsyncIterator[None]:
        """Wait for one of the endpoint's concurrent slots and hold it for the attempt."""
        limiter = self._limiters.setdefault(destination_id, _Limiter(asyncio.Semaphore(self._concurrency)))
        limiter.waiting += 1
        entered = False
        try:
            async with limiter.semaphore:
                limiter.waiting -= 1
                entered = True
                limiter.running += 1
                try:
                    yield
                finally:
                    limiter.running -= 1
        finally:
            if not entered:
                limiter.waiting -= 1
            if (
                limiter.waiting == 0
                and limiter.running == 0
                and self._limiters.get(destination_id) is limiter
            ):
                del self._limiters[destination_id]

    def tracked(self) -> int:
        """How many endpoints have a limiter now (for tests: idle ones are forgotten)."""
        return len(self._limiters)
