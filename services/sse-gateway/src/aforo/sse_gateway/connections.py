"""Open streams of this process, each with a bounded queue, and the fan-out into them.

Bounded memory is the rule: `publish` never waits for a client. Each stream holds at most
`queue_frames` frames and `queue_bytes` bytes of them; a client too slow to drain them is cut off at
once (its transport aborted, so a write stuck on a full socket ends too) and resumes with
Last-Event-ID elsewhere or later. One process therefore holds at most `max_connections * queue_bytes`
bytes of queued frames plus the sockets' buffers, however slow its clients are and however large a
producer's frames (frames are shared between the streams of one customer, so usually far less).

A stream whose client went away is noticed by aiohttp's handler cancellation (the gateway turns it on)
and, as a fallback, by the heartbeat tick, which ends streams whose transport is gone or closing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from aforo.sse_gateway.history import StreamKey
from aforo.sse_gateway.metrics import (
    DISCONNECTS,
    EVENTS_FANNED_OUT,
    OPEN_CONNECTIONS,
    SLOW_CONSUMER_DISCONNECTS,
)

HEARTBEAT_TICK_SECONDS = 0.1
"""How often the heartbeat ticker wakes; each tick visits one shard, so a heartbeat interval is split
into `heartbeat_seconds / HEARTBEAT_TICK_SECONDS` shards (`heartbeat_shards`)."""
MAX_HEARTBEAT_SHARDS = 3_600
DEFAULT_QUEUE_BYTES = 1024 * 1024
HEARTBEAT = b": heartbeat\n\n"
"""An SSE comment: keeps idle streams alive through proxies' idle timeouts; clients ignore it."""


class CloseReason(StrEnum):
    """Why a stream ended (a metric label; the SDK reconnects after every one of them)."""

    CLIENT_GONE = "client_gone"
    SLOW_CONSUMER = "slow_consumer"
    REVOKED = "revoked"
    SESSION_ENDED = "session_ended"
    DRAINING = "draining"


@dataclass(frozen=True, slots=True)
class StreamGrant:
    """What authorised one open stream: checked again by every revocation sweep."""

    tenant_id: str
    customer_id: str
    session_id: str
    embed_key_id: str
    session_ends_at: datetime

    @property
    def key(self) -> StreamKey:
        return (self.tenant_id, self.customer_id)


class Connection:
    """One browser stream: what authorised it, its queue of frames, and how to cut it off."""

    __slots__ = (
        "_abort",
        "_byte_limit",
        "_frames",
        "_gone",
        "_heartbeat_due",
        "_limit",
        "_queued_bytes",
        "_sent_since_tick",
        "_waiter",
        "closed",
        "grant",
        "key",
        "shard",
    )

    def __init__(
        self,
        grant: StreamGrant,
        *,
        queue_frames: int,
        abort: Callable[[], None],
        queue_bytes: int = DEFAULT_QUEUE_BYTES,
        gone: Callable[[], bool] = lambda: False,
    ) -> None:
        self.grant = grant
        self.key = grant.key
        self.closed: CloseReason | None = None
        # A list and a bare future, not a deque and an asyncio.Event: an empty deque takes 600 bytes
        # and an Event another deque, for each of tens of thousands of mostly idle streams.
        self._frames: list[bytes] = []
        self._limit = queue_frames
        self._byte_limit = queue_bytes
        self._queued_bytes = 0
        self._gone = gone
        self._waiter: asyncio.Future[None] | None = None
        self._abort = abort
        self._heartbeat_due = False
        self._sent_since_tick = True  # the stream's first bytes go out as it opens
        self.shard = 0  # which heartbeat shard ticks it (set by the registry)

    @property
    def queued(self) -> int:
        return len(self._frames)

    @property
    def queued_bytes(self) -> int:
        return self._queued_bytes

    def offer(self, frame: bytes) -> bool:
        """Queue a frame; a full queue (frames or bytes) closes the stream as a slow consumer and
        returns False."""
        if self.closed is not None:
            return False
        if len(self._frames) >= self._limit or self._queued_bytes + len(frame) > self._byte_limit:
            self.close(CloseReason.SLOW_CONSUMER)
            return False
        self._frames.append(frame)
        self._queued_bytes += len(frame)
        self._wake()
        return True

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def tick(self) -> None:
        """One heartbeat interval passed: a stream whose client is gone ends; one that sent nothing
        during it sends a heartbeat."""
        if self.closed is None and self._gone():
            self.close(CloseReason.CLIENT_GONE)
            return
        if not self._sent_since_tick and self.closed is None:
            self._heartbeat_due = True
            self._wake()
        self._sent_since_tick = False

    async def take(self) -> bytes:
        """Every queued frame as one chunk, or `HEARTBEAT` when one is due; b"" once closed.

        Heartbeats come from one ticker for all streams (`ConnectionRegistry.tick`) rather than a
        timeout per wait: with thousands of streams, a timer per stream per event is garbage the
        collector has to walk.
        """
        while not self._frames and not self._heartbeat_due and self.closed is None:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if self.closed is not None:
            return b""
        self._sent_since_tick = True
        self._heartbeat_due = False
        frames = self._frames
        if not frames:
            return HEARTBEAT
        chunk = frames[0] if len(frames) == 1 else b"".join(frames)
        frames.clear()
        self._queued_bytes = 0
        return chunk

    def close(self, reason: CloseReason) -> None:
        """End the stream; the first reason counts. A slow consumer's transport is aborted at once."""
        if self.closed is not None:
            return
        self.closed = reason
        self._frames.clear()
        self._queued_bytes = 0
        self._wake()
        if reason is CloseReason.SLOW_CONSUMER:
            SLOW_CONSUMER_DISCONNECTS.inc()
            self._abort()

    def abort(self) -> None:
        """Abort the transport: a handler stuck in a write to a client that stopped reading returns."""
        self._abort()


def heartbeat_shards(heartbeat_seconds: float) -> int:
    """Shards of streams for one tick every `HEARTBEAT_TICK_SECONDS`: the heartbeats of thousands of
    streams go out in small groups spread over the interval, not in bursts that delay live events."""
    return max(1, min(MAX_HEARTBEAT_SHARDS, round(heartbeat_seconds / HEARTBEAT_TICK_SECONDS)))


class ConnectionRegistry:
    """Streams by (tenant, customer); `publish` routes one event's frame to that key's streams only."""

    def __init__(self, heartbeat_shards: int = 10) -> None:
        # Each shard's streams are listed, so a tick visits its own streams only (not all of them to
        # pick its own): with 19,000 streams and a tick every 100 ms, that is ~130 streams a tick.
        self._shards: list[list[Connection]] = [[] for _ in range(max(1, heartbeat_shards))]
        # A list per key, not a set: nearly every customer has one stream (a set costs 216 bytes
        # empty, a list of one 64), and a key holds at most `max_connections_per_stream` of them.
        self._by_key: dict[StreamKey, list[Connection]] = {}
        self._count = 0
        self._added = 0
        self._empty = asyncio.Event()
        self._empty.set()

    def __len__(self) -> int:
        return self._count

    def count_for(self, key: StreamKey) -> int:
        return len(self._by_key.get(key, ()))

    def __iter__(self) -> Iterator[Connection]:
        for connections in list(self._by_key.values()):
            yield from list(connections)

    @property
    def heartbeat_shards(self) -> int:
        return len(self._shards)

    def add(self, connection: Connection) -> None:
        connection.shard = self._added % len(self._shards)
        self._added += 1
        self._shards[connection.shard].append(connection)
        self._by_key.setdefault(connection.key, []).append(connection)
        self._count += 1
        self._empty.clear()
        OPEN_CONNECTIONS.set(self._count)

    def remove(self, connection: Connection) -> None:
        """Forget a stream (its handler has returned); the close reason is counted here, once."""
        connections = self._by_key.get(connection.key)
        if connections is None or connection not in connections:
            return
        connections.remove(connection)
        self._shards[connection.shard].remove(connection)
        if not connections:
            del self._by_key[connection.key]
        self._count -= 1
        OPEN_CONNECTIONS.set(self._count)
        DISCONNECTS.labels((connection.closed or CloseReason.CLIENT_GONE).value).inc()
        if self._count == 0:
            self._empty.set()

    def publish(self, key: StreamKey, event_type: str, frame: bytes) -> int:
        """Queue `frame` to every stream of `key`; returns how many took it (slow ones are cut off)."""
        connections = self._by_key.get(key)
        if not connections:
            return 0
        delivered = sum(1 for connection in list(connections) if connection.offer(frame))
        if delivered:
            EVENTS_FANNED_OUT.labels(event_type).inc(delivered)
        return delivered

    def tick(self, shard: int | None = None) -> None:
        """Tick one heartbeat shard (every stream when `shard` is None).

        The service ticks the shards in turn, each once per heartbeat interval, so the streams'
        heartbeats are spread over the interval: waking thousands of streams at once leaves a burst
        of live objects that the garbage collector promotes, and later walks in a long full pass.
        """
        for connections in self._shards if shard is None else (self._shards[shard],):
            for connection in connections:
                connection.tick()

    def close_all(self, reason: CloseReason) -> int:
        closing = [connection for connection in self if connection.closed is None]
        for connection in closing:
            connection.close(reason)
        return len(closing)

    def abort_all(self) -> int:
        """Abort every remaining stream's transport (drain, once closing them was not enough)."""
        remaining = list(self)
        for connection in remaining:
            connection.abort()
        return len(remaining)

    async def wait_empty(self) -> None:
        """Until every stream's handler has returned (after `close_all`, during drain)."""
        await self._empty.wait()
