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
from typing import Any, Final, NamedTuple

MISSING: Final = object()
"""What `TtlCache.fresh` returns when it holds no current answer (None is an answer)."""

Key = tuple[str, ...]

EVICTED_WHEN_FULL: Final = 0.1
"""The share of the oldest answers a full cache forgets at once (after the expired ones)."""


class _Entry(NamedTuple):
    began: float
    """When its load began (of `clock`): what it read is at least that recent."""
    stored: float
    """When it was stored: its own TTL counts from here."""
    value: Any


def _never(began: float) -> bool:
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
        self._group_of: Callable[[Key], str] | None = None
        self._entries: dict[Key, _Entry] = {}
        self._groups: dict[str, set[Key]] = {}
        """Per group (`trust_while`), the keys stored for it: dropping a group touches only those."""
        self._loading: dict[Key, asyncio.Future[Any]] = {}

    def trust_while(
        self, vouches: Callable[[float], bool], ttl: float, group_of: Callable[[Key], str]
    ) -> None:
        """Keep an answer up to `ttl` seconds (beyond the cache's own) while `vouches(began)` holds
        for it, `began` being when its load began. Whoever vouches promises to drop every answer a
        change makes stale: by `drop_group` (answers are grouped by `group_of(key)`) or `clear`."""
        self._vouches = vouches
        self._vouched_ttl = ttl
        self._group_of = group_of
        self._regroup()

    def fresh(self, key: Key) -> Any:
        """The remembered answer if it is still good, else `MISSING` (`get_or_load` asks this first)."""
        entry = self._entries.get(key)
        if entry is None:
            return MISSING
        now = self._clock()
        if now - entry.stored <= self._ttl:
            return entry.value
        if now - entry.began <= self._vouched_ttl and self._vouches(entry.began):
            return entry.value
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

    def _put(self, key: Key, value: Any, began: float) -> None:
        now = self._clock()
        if len(self._entries) >= self._max_entries and key not in self._entries:
            self._make_room(now)
        self._entries[key] = _Entry(began, now, value)
        if self._group_of is not None:
            self._groups.setdefault(self._group_of(key), set()).add(key)

    def _make_room(self, now: float) -> None:
        """Forget the expired answers, then if need be the oldest tenth (one pass, not per put)."""
        longest = max(self._ttl, self._vouched_ttl)
        kept = [(key, entry) for key, entry in self._entries.items() if now - entry.began <= longest]
        if len(kept) >= self._max_entries:
            kept = kept[max(1, int(self._max_entries * EVICTED_WHEN_FULL)) :]
        self._entries = dict(kept)
        self._regroup()

    def _regroup(self) -> None:
        self._groups = {}
        if self._group_of is not None:
            for key in self._entries:
                self._groups.setdefault(self._group_of(key), set()).add(key)

    def drop(self, prefix: Key) -> None:
        """Forget every answer whose key starts with `prefix` (a change this process made itself)."""
        self.drop_where(lambda key: key[: len(prefix)] == prefix)

    def drop_where(self, stale: Callable[[Key], bool]) -> None:
        """Forget every answer, and every load under way, whose key `stale` picks (a full scan)."""
        for key in [key for key in self._entries if stale(key)]:
            self._forget(key)
        for key in [key for key in self._loading if stale(key)]:
            del self._loading[key]

    def drop_group(self, group: str) -> None:
        """Forget every answer, and every load under way, of one group (`trust_while`): the work is
        that group's keys, not the whole cache, so one tenant's changes cost the others nothing."""
        for key in self._groups.pop(group, ()):
            self._entries.pop(key, None)
        group_of = self._group_of
        if group_of is not None:
            for key in [key for key in self._loading if group_of(key) == group]:
                del self._loading[key]

    def clear(self) -> None:
        """Forget every answer and every load under way."""
        self._entries.clear()
        self._groups.clear()
        self._loading.clear()

    def _forget(self, key: Key) -> None:
        self._entries.pop(key, None)
        if self._group_of is not None:
            keys = self._groups.get(self._group_of(key))
            if keys is not None:
                keys.discard(key)

    def __len__(self) -> int:
        return len(self._entries)
