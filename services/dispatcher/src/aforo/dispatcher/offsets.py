"""Which offsets may be committed when records finish out of order. Pure.

The dispatcher works on many events at once (a slow receiver must not hold up the others), so
records of one partition finish in any order; only the contiguous finished prefix may be committed,
or a crash would skip the unfinished records before it.

A record whose handling failed (MongoDB down, a broker refusal) must be read again, and so must every
record after it: the partition is *rewound* to the lowest failed offset. Several records of one
partition often fail together (an outage fails all of them); each failure only lowers the rewind
point, never raises it, so the earliest failed record is the one the partition is read from again.
Until the fetch loop has applied the rewind, no record of that partition may start (it would be a
record fetched before the rewind, and finishing it would let the commit pass the failed one).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Partition = TypeVar("Partition", bound=Hashable)


@dataclass
class _PartitionProgress:
    started: set[int] = field(default_factory=set)
    finished: set[int] = field(default_factory=set)
    committable: int | None = None  # the next offset to commit (last contiguous finished + 1)
    committed: int | None = None  # the offset the last successful commit stored
    rewind_to: int | None = None  # the lowest failed offset, until the fetch loop seeks back to it
    rewind_not_before: float = 0.0  # when the rewind may be applied (a backoff between failures)
    consecutive_failures: int = 0


@dataclass
class OffsetTracker(Generic[Partition]):
    _partitions: dict[Partition, _PartitionProgress] = field(default_factory=dict)

    def start(self, partition: Partition, offset: int) -> None:
        self._partitions.setdefault(partition, _PartitionProgress()).started.add(offset)

    def finish(self, partition: Partition, offset: int) -> None:
        progress = self._partitions.get(partition)
        if progress is None or offset not in progress.started:
            return  # the partition was revoked or rewound since: the record will be read again
        progress.started.discard(offset)
        progress.finished.add(offset)
        progress.consecutive_failures = 0

    def fail(
        self,
        partition: Partition,
        offset: int,
        *,
        now: float,
        first_backoff_seconds: float = 1.0,
        max_backoff_seconds: float = 30.0,
    ) -> None:
        """The record at `offset` was not handled: read the partition again from the lowest failed
        offset, after a backoff that doubles with each consecutive failure (1 s, 2 s, ... the cap)."""
        progress = self._partitions.get(partition)
        if progress is None or offset not in progress.started:
            return  # revoked or already rewound past it: it will be read again anyway
        if progress.rewind_to is None:
            # The first failure since the last rewind sets the backoff; the others of the same
            # outage only lower the rewind point.
            progress.consecutive_failures += 1
            backoff = min(
                max_backoff_seconds, first_backoff_seconds * 2.0 ** (progress.consecutive_failures - 1)
            )
            progress.rewind_not_before = now + backoff
            progress.rewind_to = offset
        else:
            progress.rewind_to = min(progress.rewind_to, offset)
        # Every record from the rewind point on will be read and started again; what runs of them now
        # can no longer count, so the commit can never pass the failed record.
        progress.started = {o for o in progress.started if o < progress.rewind_to}
        progress.finished = {o for o in progress.finished if o < progress.rewind_to}

    def rewind_pending(self, partition: Partition) -> bool:
        """Whether a failure waits to be rewound to: records fetched before the rewind must not start."""
        progress = self._partitions.get(partition)
        return progress is not None and progress.rewind_to is not None

    def take_rewinds(self, now: float) -> dict[Partition, int]:
        """The rewinds whose backoff has passed, to seek to now; each is handed out once."""
        due: dict[Partition, int] = {}
        for partition, progress in self._partitions.items():
            if progress.rewind_to is not None and progress.rewind_not_before <= now:
                due[partition] = progress.rewind_to
                progress.rewind_to = None
        return due

    def committable(self) -> dict[Partition, int]:
        """Per partition, the offset to commit: just past every finished record with none pending
        before it; partitions with nothing new since the last `committed` are left out. Until
        `committed` confirms it, the same offset is offered again (a failed commit is retried)."""
        result: dict[Partition, int] = {}
        for partition, progress in self._partitions.items():
            lowest_pending = min(progress.started) if progress.started else None
            done = sorted(o for o in progress.finished if lowest_pending is None or o < lowest_pending)
            if done:
                progress.finished.difference_update(done)
                progress.committable = done[-1] + 1
            if progress.committable is not None and progress.committable != progress.committed:
                result[partition] = progress.committable
        return result

    def committed(self, offsets: dict[Partition, int]) -> None:
        """The broker stored these offsets: stop offering them."""
        for partition, offset in offsets.items():
            progress = self._partitions.get(partition)
            if progress is not None:
                progress.committed = offset

    def in_flight(self) -> int:
        return sum(len(progress.started) for progress in self._partitions.values())

    def forget(self, partition: Partition) -> None:
        """A partition was revoked: its progress belongs to the next owner now."""
        self._partitions.pop(partition, None)
