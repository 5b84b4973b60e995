"""The contiguous-prefix rule for committing records that finish out of order."""

from __future__ import annotations

from aforo.dispatcher.offsets import OffsetTracker


def started(*offsets: int, partition: str = "p0") -> OffsetTracker[str]:
    tracker: OffsetTracker[str] = OffsetTracker()
    for offset in offsets:
        tracker.start(partition, offset)
    return tracker


def test_nothing_finished_nothing_to_commit() -> None:
    assert started(0, 1, 2).committable() == {}


def test_only_the_contiguous_finished_prefix_is_committable() -> None:
    tracker = started(10, 11, 12, 13)
    tracker.finish("p0", 10)
    tracker.finish("p0", 12)  # 11 still pending: 12 must wait
    assert tracker.committable() == {"p0": 11}
    tracker.committed({"p0": 11})
    tracker.finish("p0", 11)
    assert tracker.committable() == {"p0": 13}
    assert tracker.in_flight() == 1


def test_an_offset_is_offered_again_until_a_commit_confirms_it() -> None:
    tracker = started(0, 1)
    tracker.finish("p0", 0)
    assert tracker.committable() == {"p0": 1}
    assert tracker.committable() == {"p0": 1}  # the commit failed (or the flush before it): retry
    tracker.committed({"p0": 1})
    assert tracker.committable() == {}
    tracker.finish("p0", 1)
    assert tracker.committable() == {"p0": 2}


def test_partitions_are_independent() -> None:
    tracker = started(0, 1, partition="a")
    tracker.start("b", 5)
    tracker.finish("b", 5)
    assert tracker.committable() == {"b": 6}


def test_a_forgotten_partition_ignores_late_finishes() -> None:
    tracker = started(0, 1)
    tracker.forget("p0")  # revoked, or rewound after a failure: the record is read again
    tracker.finish("p0", 0)
    assert tracker.committable() == {}
    assert tracker.in_flight() == 0
