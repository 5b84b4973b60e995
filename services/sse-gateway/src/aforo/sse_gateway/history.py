"""The bounded recent history per (tenant, customer) that `Last-Event-ID` resumes from. Pure.

Bounds, all from settings: at most `per_stream` events per stream, none older than `window_ms`
(by the Kafka record timestamp, so every replica ages events alike), and at most `max_events` in
all, taken from the least recently active streams first. An event id already held is not recorded
again, so a record the bridge re-published (at least once) reaches no browser twice.

Resume rules (`HistoryStore.resume`):
- no Last-Event-ID: nothing to replay, live events only;
- a held id: exactly the events after it, in order;
- an id not held (older than the history, from before this replica's rebuild window, or made up):
  everything held, in order, and `found=False`. The client may have missed events before them;
  the SDK also drops ids it has already seen, which covers a replica that is a moment behind.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

StreamKey = tuple[str, str]
"""(tenant id, customer id): one browser stream."""

LIVE_HORIZON_FLOOR_MS = 60_000
"""Live events are delivered up to this old even when the history window is shorter (or off)."""


def too_old_to_deliver(timestamp_ms: int, now_ms: int, window_ms: int) -> bool:
    """An event older than the history window (at least `LIVE_HORIZON_FLOOR_MS`) reaches no live stream.

    Live streams only ever miss what a resume could replay; an event older than that arrives only
    when the feed jumped back (an offset reset after the log was truncated, a topic recreated), and
    replaying hours of old events into every open widget would be wrong and a flood.
    """
    return timestamp_ms < now_ms - max(window_ms, LIVE_HORIZON_FLOOR_MS)


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    event_id: str
    frame: bytes
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class Resume:
    frames: list[bytes]
    found: bool


class HistoryStore:
    def __init__(self, *, per_stream: int, max_events: int, window_ms: int) -> None:
        self.per_stream = per_stream
        self.max_events = max_events
        self.window_ms = window_ms
        self._streams: OrderedDict[StreamKey, OrderedDict[str, HistoryEntry]] = OrderedDict()
        self._total = 0

    def __len__(self) -> int:
        return self._total

    @property
    def stream_count(self) -> int:
        return len(self._streams)

    def seen(self, key: StreamKey, event_id: str) -> bool:
        stream = self._streams.get(key)
        return stream is not None and event_id in stream

    def record(self, key: StreamKey, entry: HistoryEntry, now_ms: int) -> bool:
        """Keep `entry`; False (and nothing kept) when its event id is already held for this stream."""
        stream = self._streams.get(key)
        if stream is not None and entry.event_id in stream:
            return False
        if self.per_stream == 0 or self.max_events == 0 or entry.timestamp_ms < now_ms - self.window_ms:
            return True  # history disabled, or too old to keep: still a new event
        if stream is None:
            stream = self._streams[key] = OrderedDict()
        else:
            self._streams.move_to_end(key)
        stream[entry.event_id] = entry
        self._total += 1
        if len(stream) > self.per_stream:
            stream.popitem(last=False)
            self._total -= 1
        while self._total > self.max_events:
            oldest_key, oldest = next(iter(self._streams.items()))
            oldest.popitem(last=False)
            self._total -= 1
            if not oldest:
                del self._streams[oldest_key]
        return True

    def resume(self, key: StreamKey, last_event_id: str | None, now_ms: int) -> Resume:
        """The frames a client that last saw `last_event_id` has missed (see the module docstring)."""
        if last_event_id is None:
            return Resume([], True)
        stream = self._streams.get(key)
        if stream is None:
            return Resume([], False)
        self._expire(key, stream, now_ms)
        entries = list(stream.values())
        for index, entry in enumerate(entries):
            if entry.event_id == last_event_id:
                return Resume([later.frame for later in entries[index + 1 :]], True)
        return Resume([entry.frame for entry in entries], False)

    def expire(self, now_ms: int) -> None:
        """Drop every event older than the window (called periodically, so idle streams shrink too)."""
        for key in list(self._streams):
            self._expire(key, self._streams[key], now_ms)

    def _expire(self, key: StreamKey, stream: OrderedDict[str, HistoryEntry], now_ms: int) -> None:
        cutoff = now_ms - self.window_ms
        while stream and next(iter(stream.values())).timestamp_ms < cutoff:
            stream.popitem(last=False)
            self._total -= 1
        if not stream:
            del self._streams[key]
