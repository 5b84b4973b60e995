"""How far each partition's records may ever have been worked on: the idempotency lookups a consumer
can skip (issue #14: the database off the delivery hot path).

An attempt's delivery-log row is its idempotency record, so before attempt 1 of an event the
dispatcher could ask MongoDB whether that row exists. A row can exist only if some process already
started the record that carries the event. So every flush of rows first stores, per partition, the
highest offset this process has *started* (a `$max` upsert, one small document per partition), and
writes the rows only after it: no row is ever stored whose record lies past its partition's stored
mark. When a partition is assigned, its new owner reads the mark; a record past it has never been
started by anyone, and its attempts are sent without asking the database. Records up to the mark (a
crashed owner's uncommitted tail, or this process's own records read again after a rewind) are
looked up as before.

What this does not see (docs/dispatch.md, "at-least-once windows"): a *second record* of an event
(a producer that crashed and published it again) whose first record was handled by a previous
dispatcher process is sent again; within one process the recently finished attempts catch it.

`PartitionMarks` is the pure bookkeeping; `MarkStore` reads and writes the marks in MongoDB.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Generic, TypeVar

from aiokafka import TopicPartition
from pymongo import UpdateOne
from pymongo.errors import PyMongoError

from aforo.shared.collections import PARTITION_MARKS
from aforo.shared.logging import get_logger
from aforo.shared.mongo import MongoStore

log = get_logger(__name__)

Partition = TypeVar("Partition", bound=Hashable)

NEVER_STARTED = -1
"""The mark of a partition no process has stored one for: every record is past it."""


@dataclass
class PartitionMarks(Generic[Partition]):
    """Per partition: up to which offset records may have rows (`looked_up_through`), and the highest
    offset started here (`started_through`), to store before rows are written."""

    _looked_up_through: dict[Partition, int] = field(default_factory=dict)
    _started_through: dict[Partition, int] = field(default_factory=dict)
    _saved: dict[Partition, int] = field(default_factory=dict)

    def assigned(self, partition: Partition, stored_mark: int | None) -> None:
        """The partition is ours; `stored_mark` is what its previous owners stored (None: nothing)."""
        mark = NEVER_STARTED if stored_mark is None else stored_mark
        # A mark read late (it was unreadable at assignment) must still cover what this process
        # started meanwhile: those records may have rows by now.
        started = self._started_through.get(partition, NEVER_STARTED)
        self._looked_up_through[partition] = max(mark, started)
        self._saved[partition] = max(mark, self._saved.get(partition, NEVER_STARTED))

    def unknown(self, partition: Partition) -> None:
        """The stored mark could not be read: every record of the partition is looked up."""
        self._looked_up_through.pop(partition, None)

    def is_unknown(self, partition: Partition) -> bool:
        return partition not in self._looked_up_through

    def started(self, partition: Partition, offset: int) -> bool:
        """A record is handed to a handler; returns whether it is past every mark (no lookup needed)."""
        if offset > self._started_through.get(partition, NEVER_STARTED):
            self._started_through[partition] = offset
        through = self._looked_up_through.get(partition)
        return through is not None and offset > through

    def rewound(self, partition: Partition) -> None:
        """The partition is read again from an earlier offset: what this process started may have
        rows now, so those records are looked up when they come again."""
        started = self._started_through.get(partition)
        through = self._looked_up_through.get(partition)
        if started is not None and through is not None:
            self._looked_up_through[partition] = max(through, started)

    def forget(self, partition: Partition) -> None:
        """The partition was revoked: the next owner reads the stored mark."""
        self._looked_up_through.pop(partition, None)
        self._started_through.pop(partition, None)
        self._saved.pop(partition, None)

    def unsaved(self) -> dict[Partition, int]:
        """The marks to store before the next rows are written (those that moved since last saved)."""
        return {
            partition: offset
            for partition, offset in self._started_through.items()
            if offset > self._saved.get(partition, NEVER_STARTED)
        }

    def saved(self, marks: Mapping[Partition, int]) -> None:
        for partition, offset in marks.items():
            if offset > self._saved.get(partition, NEVER_STARTED):
                self._saved[partition] = offset


def mark_id(group: str, topic: str, partition: int) -> str:
    """One stored mark per (consumer group, topic, partition)."""
    return f"{group}/{topic}/{partition}"


class MarkStore:
    """The stored marks of one consumer group (`partition_marks`: looked up by `_id` only)."""

    def __init__(self, mongo: MongoStore, group: str) -> None:
        self._collection = mongo.collection(PARTITION_MARKS.collection)
        self._group = group

    async def load(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int | None]:
        """The stored mark of each partition; None where none was ever stored."""
        wanted = {mark_id(self._group, tp.topic, tp.partition): tp for tp in partitions}
        marks: dict[TopicPartition, int | None] = dict.fromkeys(wanted.values())
        if not wanted:
            return marks
        async for document in self._collection.find({"_id": {"$in": list(wanted)}}):
            marks[wanted[document["_id"]]] = int(document["startedThrough"])
        return marks

    async def save(self, marks: Mapping[TopicPartition, int]) -> None:
        """Raise each mark to at least the given offset (never lower: `$max`)."""
        if not marks:
            return
        now = datetime.now(UTC)
        await self._collection.bulk_write(
            [
                UpdateOne(
                    {"_id": mark_id(self._group, tp.topic, tp.partition)},
                    {"$max": {"startedThrough": offset}, "$set": {"updatedAt": now}},
                    upsert=True,
                )
                for tp, offset in marks.items()
            ],
            ordered=False,
        )


class PartitionMarkKeeper:
    """One consumer's marks: read when partitions are assigned, stored by the log writer before rows."""

    RELOAD_SECONDS = 5.0
    """How soon a mark that could not be read (MongoDB away at assignment) is read again."""

    def __init__(self, store: MarkStore) -> None:
        self.marks: PartitionMarks[TopicPartition] = PartitionMarks()
        self._store = store
        self._unknown_since: dict[TopicPartition, float] = {}

    async def assigned(self, partitions: Iterable[TopicPartition], now: float) -> None:
        """Read the stored marks of newly assigned partitions; unreadable ones are looked up in full."""
        wanted = list(partitions)
        try:
            stored = await self._store.load(wanted)
        except PyMongoError as error:
            for partition in wanted:
                self.marks.unknown(partition)
                self._unknown_since[partition] = now
            log.warning("partition_marks_unreadable", partitions=len(wanted), error=repr(error)[:300])
            return
        for partition, mark in stored.items():
            self.marks.assigned(partition, mark)
            self._unknown_since.pop(partition, None)

    def due_for_reload(self, assignment: Iterable[TopicPartition], now: float) -> list[TopicPartition]:
        """Assigned partitions whose mark could not be read, last tried long enough ago."""
        if not self._unknown_since:
            return []  # the common case, asked before every fetch
        due = [
            partition
            for partition in assignment
            if partition in self._unknown_since
            and now - self._unknown_since[partition] >= self.RELOAD_SECONDS
        ]
        for partition in due:
            self._unknown_since[partition] = now  # one try per interval
        return due

    def started(self, partition: TopicPartition, offset: int) -> bool:
        """A record is handed to a handler; whether it is unseen (no idempotency lookup needed)."""
        return self.marks.started(partition, offset)

    def rewound(self, partition: TopicPartition) -> None:
        self.marks.rewound(partition)

    def forget(self, partition: TopicPartition) -> None:
        self.marks.forget(partition)
        self._unknown_since.pop(partition, None)

    def pending(self) -> dict[TopicPartition, int]:
        return self.marks.unsaved()

    async def save(self, marks: Mapping[TopicPartition, int]) -> None:
        await self._store.save(marks)
        self.marks.saved(marks)
