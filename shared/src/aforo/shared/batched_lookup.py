"""Point lookups of many concurrent callers answered by shared queries (a `find` with `$in`, say).

Why: a burst of callers that each need one document (the dispatcher asking "has this attempt already
happened?" once per delivery, the gateway reading a session once per stream connect) would otherwise
cost one database round trip each, and the database becomes the bound. The callers of one event-loop
turn share queries sent on the next turn: no timer, so a lone lookup waits for nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Generic, TypeVar

ScopeT = TypeVar("ScopeT", bound=Hashable)
KeyT = TypeVar("KeyT", bound=Hashable)
ValueT = TypeVar("ValueT")

DEFAULT_MAX_BATCH = 32
"""Keys per query. Small, and the queries of one turn run concurrently: SecantusDB's cost for `$in`
grows with the square of the list (measured: 10 ids 1 ms, 100 ids 36 ms, 200 ids 119 ms)."""

Fetch = Callable[[ScopeT, list[KeyT]], Awaitable[Mapping[KeyT, ValueT]]]


class BatchedLookup(Generic[ScopeT, KeyT, ValueT]):
    """`await lookup.get(scope, key)`: the value stored under `key` in `scope`, or None.

    `fetch(scope, keys)` runs one query for at most `max_batch` distinct keys of one scope and returns
    what it found by key; a key it leaves out is answered None. A query never mixes scopes, so a scope
    that is a tenant keeps every query inside one tenant. A failed query fails exactly its callers.
    """

    def __init__(self, fetch: Fetch[ScopeT, KeyT, ValueT], max_batch: int = DEFAULT_MAX_BATCH) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self._fetch = fetch
        self._max_batch = max_batch
        self._waiting: list[tuple[ScopeT, KeyT, asyncio.Future[ValueT | None]]] = []
        self._scheduled = False
        self._queries: set[asyncio.Task[None]] = set()

    async def get(self, scope: ScopeT, key: KeyT) -> ValueT | None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[ValueT | None] = loop.create_future()
        self._waiting.append((scope, key, future))
        if not self._scheduled:
            # On the next turn of the loop: every caller of this turn shares the queries.
            self._scheduled = True
            loop.call_soon(self._send_waiting)
        return await future

    def _send_waiting(self) -> None:
        self._scheduled = False
        waiting, self._waiting = self._waiting, []
        by_scope: dict[ScopeT, list[tuple[KeyT, asyncio.Future[ValueT | None]]]] = {}
        for scope, key, future in waiting:
            by_scope.setdefault(scope, []).append((key, future))
        for scope, callers in by_scope.items():
            for start in range(0, len(callers), self._max_batch):
                task = asyncio.create_task(self._query(scope, callers[start : start + self._max_batch]))
                self._queries.add(task)  # held until done: the loop keeps only weak references
                task.add_done_callback(self._queries.discard)

    async def _query(self, scope: ScopeT, batch: list[tuple[KeyT, asyncio.Future[ValueT | None]]]) -> None:
        try:
            found = await self._fetch(scope, list(dict.fromkeys(key for key, _ in batch)))
        except BaseException as error:
            for _, future in batch:
                if not future.done():
                    if isinstance(error, Exception):
                        future.set_exception(error)
                    else:
                        future.cancel()
            if not isinstance(error, Exception):
                raise
            return
        for key, future in batch:
            if not future.done():  # its caller may have gone (a client that closed its connect)
                future.set_result(found.get(key))
