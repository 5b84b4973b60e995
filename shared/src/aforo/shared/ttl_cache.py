"""A small in-process cache of answers read from a database, for a bounded time.

Why: a service that looks the same configuration up for every event or request would otherwise
make a round trip each time; remembering answers for a few seconds bounds both the reads and how
stale an answer can be.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any


class TtlCache:
    """Answers remembered for `ttl` seconds (of `clock`), at most `max_entries` of them.

    Loads are single-flight: callers that miss while a key is being loaded await that one load, so
    a burst of requests for one key (or every caller at a TTL boundary) costs one query. An answer
    that raised is not remembered; `None` is.
    """

    def __init__(
        self, ttl: float, max_entries: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl = ttl
        self._max_entries = max_entries
        self._clock = clock
        self._entries: dict[tuple[str, ...], tuple[float, Any]] = {}
        self._loading: dict[tuple[str, ...], asyncio.Future[Any]] = {}

    async def get_or_load(self, key: tuple[str, ...], load: Callable[[], Awaitable[Any]]) -> Any:
        entry = self._entries.get(key)
        if entry is not None and entry[0] >= self._clock():
            return entry[1]
        loading = self._loading.get(key)
        if loading is None:
            loading = asyncio.ensure_future(load())
            self._loading[key] = loading
            loading.add_done_callback(lambda done: self._loaded(key, done))
        # Shielded: one caller's cancellation must not cancel the load the others wait on.
        return await asyncio.shield(loading)

    def _loaded(self, key: tuple[str, ...], done: asyncio.Future[Any]) -> None:
        if self._loading.get(key) is not done:
            return  # dropped while loading: its answer may predate the change
        del self._loading[key]
        if not done.cancelled() and done.exception() is None:
            self._put(key, done.result())

    def _put(self, key: tuple[str, ...], value: Any) -> None:
        if len(self._entries) >= self._max_entries:
            now = self._clock()
            self._entries = {k: v for k, v in self._entries.items() if v[0] >= now}
            if len(self._entries) >= self._max_entries:
                self._entries.clear()
        self._entries[key] = (self._clock() + self._ttl, value)

    def drop(self, prefix: tuple[str, ...]) -> None:
        """Forget every answer whose key starts with `prefix` (a change this process made itself)."""
        for key in [key for key in self._entries if key[: len(prefix)] == prefix]:
            del self._entries[key]
        for key in [key for key in self._loading if key[: len(prefix)] == prefix]:
            del self._loading[key]
