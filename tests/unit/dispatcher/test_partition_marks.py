"""Which records may skip the idempotency lookup (`aforo.dispatcher.partition_marks`). Pure."""

from __future__ import annotations

from aforo.dispatcher.partition_marks import NEVER_STARTED, PartitionMarks, mark_id


def test_a_partition_nobody_worked_on_skips_every_lookup() -> None:
    marks: PartitionMarks[str] = PartitionMarks()
    marks.assigned("p0", None)
    assert marks.started("p0", 0)
    assert marks.started("p0", 1)


def test_records_up_to_the_previous_owners_mark_are_looked_up_and_the_rest_are_not() -> None:
    marks: PartitionMarks[str] = PartitionMarks()
    marks.assigned("p0", 41)  # a crashed owner may have rows for offsets up to 41
    assert [marks.started("p0", offset) for offset in (40, 41, 42, 43)] == [False, False, True, True]


def test_a_partition_whose_mark_could_not_be_read_looks_up_everything_until_it_is_read() -> None:
    marks: PartitionMarks[str] = PartitionMarks()
    marks.unknown("p0")
    assert marks.is_unknown("p0")
    assert not marks.started("p0", 0)
    assert not marks.started("p0", 5)
    # Read late: what this process started meanwhile (offsets 0-5) may have rows by now.
    marks.assigned("p0", 2)
    assert not marks.is_unknown("p0")
    assert not marks.started("p0", 5)
    assert marks.started("p0", 6)


def test_after_a_rewind_the_records_this_process_started_are_looked_up_when_they_come_again() -> None:
    marks: PartitionMarks[str] = PartitionMarks()
    marks.assigned("p0", None)
    for offset in range(10):
        assert marks.started("p0", offset)
    marks.rewound("p0")  # an outage: the partition is read again from offset 3
    assert [marks.started("p0", offset) for offset in (3, 9, 10)] == [False, False, True]


def test_the_marks_to_store_are_those_that_moved_and_stored_ones_are_not_offered_again() -> None:
    marks: PartitionMarks[str] = PartitionMarks()
    marks.assigned("p0", 4)
    marks.assigned("p1", None)
    assert marks.unsaved() == {}
    marks.started("p0", 3)  # below the stored mark: nothing to store
    marks.started("p1", 0)
    marks.started("p1", 7)
    assert marks.unsaved() == {"p1": 7}
    marks.saved({"p1": 7})
    assert marks.unsaved() == {}
    marks.started("p0", 5)
    assert marks.unsaved() == {"p0": 5}


def test_a_revoked_partition_is_forgotten_and_its_next_assignment_reads_the_stored_mark() -> None:
    marks: PartitionMarks[str] = PartitionMarks()
    marks.assigned("p0", None)
    marks.started("p0", 8)
    marks.forget("p0")
    assert marks.is_unknown("p0")
    assert marks.unsaved() == {}
    marks.assigned("p0", 8)
    assert not marks.started("p0", 8)
    assert marks.started("p0", 9)


def test_mark_ids_name_group_topic_and_partition() -> None:
    assert mark_id("aforo-dispatcher", "events.system", 2) == "aforo-dispatcher/events.system/2"
    assert NEVER_STARTED < 0
