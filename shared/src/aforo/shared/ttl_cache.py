"""A small in-process cache of answers read from a database, for a bounded time.

Why: a service that looks the same configuration up for every event or request would otherwise
make a round trip each time; remembering answers for a few seconds bounds both the reads and how
stale an answer can be. Where a feed of changes drops the answers they change (the dispatcher's
`config_feed`), the cache may keep them far longer for as long as that feed vouches for them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

MISSING: Final = object()
"""What `TtlCache.fresh` returns when it holds no current answer (None is an answer)."""

Key = tuple[str, ...]


def _never(loaded_at: float) -> bool:
    return False


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
        self._vouched_ttl = ttl
        self._vouches: Callable[[float], bool] = _never
        self._entries: dict[Key, tuple[float, Any]] = {}
        """Per key: when the load of its answer began (of `clock`: what it read is at least that
        recent), and the answer."""
        self._loading: dict[Key, asyncio.Future[Any]] = {}

    def trust_while(self, vouches: Callable[[float], bool], ttl: float) -> None:
        """Keep an answer up to `ttl` seconds (beyond the cache's own) while `vouches(loaded_at)`
        holds for it: whoever vouches promises to `drop_where` every answer a change makes stale."""
        self._vouches = vouches
        self._vouched_ttl = ttl

    def fresh(self, key: Key) -> Any:
        """The remembered answer if it is still good, else `MISSING` (a hit without a coroutine:
        callers on a hot path try this before `get_or_load`)."""
        entry = self._entries.get(key)
        if entry is None:
            return MISSING
        age = self._clock() - entry[0]
        if age <= self._ttl or (age <= self._vouched_ttl and self._vouches(entry[0])):
            return entry[1]
        return MISSING

    async def get_or_load(self, key: Key, load: Callable[[], Awaitable[Any]]) -> Any:
        answer = self.fresh(key)
        if answer is not MISSING:
            return answer
        loading = self._loading.get(key)
        if loading is None:
            began = self._clock()
            loading = asyncio.ensure_future(load())
            self._loading[key] = loading
            loading.add_done_callback(lambda done: self._loaded(key, done, began))
        # Shielded: one caller's cancellation must not cancel the load the others wait on.
        return await asyncio.shield(loading)

    def _loaded(self, key: Key, done: asyncio.Future[Any], began: float) -> None:
        if self._loading.get(key) is not done:
            return  # dropped while loading: its answer may predate the change
        del self._loading[key]
        if not done.cancelled() and done.exception() is None:
            self._put(key, done.result(), began)

    def _put(self, key: Key, value: Any, loaded_at: float) -> None:
        now = self._clock()
        if len(self._entries) >= self._max_entries:
            longest = max(self._ttl, self._vouched_ttl)
            self._entries = {k: v for k, v in self._entries.items() if now - v[0] <= longest}
            if len(self._entries) >= self._max_entries:
                self._entries.clear()
        self._entries[key] = (loaded_at, value)

    def drop(self, prefix: Key) -> None:
        """Forget every answer whose key starts with `prefix` (a change this process made itself)."""
        self.drop_where(lambda key: key[: len(prefix)] == prefix)

    def drop_where(self, stale: Callable[[Key], bool]) -> None:
        """Forget every answer, and every load under way, whose key `stale` picks."""
        for key in [key for key in self._entries if stale(key)]:
            del self._entries[key]
        for key in [key for key in self._loading if stale(key)]:
            del self._loading[key]
