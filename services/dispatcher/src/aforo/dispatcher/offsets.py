"""Which offsets may be committed when records finish out of order. Pure.

The dispatcher works on many events at once (a slow receiver must not hold up the others), so
records of one partition finish in any order; only the contiguous finished prefix may be committed,
or a crash would skip the unfinished records before it.
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
