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


def test_several_failures_rewind_to_the_lowest_failed_offset_whatever_order_they_fail_in() -> None:
    # The outage of issue #12: records 10..14 in flight, 12 fails first, then 10, then 14. The old
    # code sought to each failed offset in turn, so the last seek (14) skipped 10..13 for good.
    tracker: OffsetTracker[str] = OffsetTracker()
    for offset in range(10, 15):
        tracker.start("p", offset)
    tracker.fail("p", 12, now=0.0)
    tracker.fail("p", 10, now=0.0)
    tracker.fail("p", 14, now=0.0)
    tracker.finish("p", 11)  # an old run finishing after the rewind does not count

    assert tracker.rewind_pending("p")
    assert tracker.committable() == {}
    assert tracker.take_rewinds(now=1.0) == {"p": 10}
    assert not tracker.rewind_pending("p")
    assert tracker.take_rewinds(now=1.0) == {}


def test_the_commit_never_passes_a_failed_record_while_later_ones_finish() -> None:
    tracker: OffsetTracker[str] = OffsetTracker()
    for offset in range(5):
        tracker.start("p", offset)
    tracker.finish("p", 0)
    tracker.finish("p", 1)
    tracker.fail("p", 2, now=0.0)
    tracker.finish("p", 3)
    tracker.finish("p", 4)

    assert tracker.committable() == {"p": 2}
    # Read again from 2: only once 2 itself finishes may the commit move past it.
    assert tracker.take_rewinds(now=5.0) == {"p": 2}
    for offset in range(2, 5):
        tracker.start("p", offset)
    tracker.finish("p", 3)
    tracker.finish("p", 4)
    assert tracker.committable() == {"p": 2}
    tracker.finish("p", 2)
    assert tracker.committable() == {"p": 5}


def test_a_rewind_waits_for_a_backoff_that_doubles_with_consecutive_failures() -> None:
    tracker: OffsetTracker[str] = OffsetTracker()
    tracker.start("p", 0)
    tracker.fail("p", 0, now=100.0)
    assert tracker.take_rewinds(now=100.5) == {}
    assert tracker.take_rewinds(now=101.0) == {"p": 0}
    tracker.start("p", 0)
    tracker.fail("p", 0, now=200.0)
    assert tracker.take_rewinds(now=201.5) == {}
    assert tracker.take_rewinds(now=202.0) == {"p": 0}
    tracker.start("p", 0)
    tracker.finish("p", 0)  # success resets the backoff
    tracker.start("p", 1)
    tracker.fail("p", 1, now=300.0)
    assert tracker.take_rewinds(now=301.0) == {"p": 1}


def test_a_failure_of_a_record_no_longer_tracked_changes_nothing() -> None:
    tracker: OffsetTracker[str] = OffsetTracker()
    tracker.start("p", 0)
    tracker.forget("p")
    tracker.fail("p", 0, now=0.0)
    assert not tracker.rewind_pending("p")
    assert tracker.take_rewinds(now=10.0) == {}
