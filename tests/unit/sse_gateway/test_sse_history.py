"""The resume history: bounds, deduplication and what a Last-Event-ID replays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import ConsumerRecord
from hypothesis import given
from hypothesis import strategies as st

from aforo.shared.serde import dumps_json
from aforo.sse_gateway.connections import Connection, ConnectionRegistry, StreamGrant
from aforo.sse_gateway.fanout import WidgetFeed
from aforo.sse_gateway.history import (
    LIVE_HORIZON_FLOOR_MS,
    HistoryEntry,
    HistoryStore,
    too_old_to_deliver,
)
from aforo.sse_gateway.settings import SseGatewaySettings

C1 = ("t1", "c1")
C2 = ("t1", "c2")
NOW_MS = 1_800_000_000_000
WINDOW_MS = 60_000


def entry(event_id: str, age_ms: int = 0) -> HistoryEntry:
    return HistoryEntry(event_id, f"frame:{event_id}".encode(), NOW_MS - age_ms)


def store(per_stream: int = 5, max_events: int = 100, window_ms: int = WINDOW_MS) -> HistoryStore:
    return HistoryStore(per_stream=per_stream, max_events=max_events, window_ms=window_ms)


def filled(*event_ids: str, **bounds: int) -> HistoryStore:
    history = store(**bounds)
    for event_id in event_ids:
        history.record(C1, entry(event_id), NOW_MS)
    return history


def frames(*event_ids: str) -> list[bytes]:
    return [f"frame:{event_id}".encode() for event_id in event_ids]


@pytest.mark.parametrize(
    ("held", "last_event_id", "replayed", "found"),
    [
        (["e1", "e2", "e3"], None, [], True),  # a first connect: live events only
        (["e1", "e2", "e3"], "e1", ["e2", "e3"], True),
        (["e1", "e2", "e3"], "e2", ["e3"], True),
        (["e1", "e2", "e3"], "e3", [], True),  # up to date
        (["e1", "e2", "e3"], "unknown", ["e1", "e2", "e3"], False),  # older than the history, or made up
        ([], "e1", [], False),
    ],
)
def test_resume_replays_exactly_what_came_after_the_last_event(
    held: list[str], last_event_id: str | None, replayed: list[str], found: bool
) -> None:
    resume = filled(*held).resume(C1, last_event_id, NOW_MS)

    assert resume.frames == frames(*replayed)
    assert resume.found is found


def test_streams_are_kept_apart() -> None:
    history = filled("e1", "e2")
    history.record(C2, entry("x1"), NOW_MS)

    assert history.resume(C2, "x1", NOW_MS).frames == []
    assert history.resume(C2, "unknown", NOW_MS).frames == frames("x1")
    assert history.resume(C1, "e1", NOW_MS).frames == frames("e2")


def test_a_re_published_event_id_is_recorded_once() -> None:
    history = filled("e1", "e2")

    assert history.record(C1, entry("e1"), NOW_MS) is False
    assert history.resume(C1, "unknown", NOW_MS).frames == frames("e1", "e2")
    assert len(history) == 2


def test_each_stream_keeps_its_most_recent_events_only() -> None:
    history = filled("e1", "e2", "e3", "e4", per_stream=3)

    assert history.resume(C1, "unknown", NOW_MS).frames == frames("e2", "e3", "e4")
    assert history.resume(C1, "e1", NOW_MS).found is False  # e1 fell out: the client may have missed some
    assert len(history) == 3


def test_the_global_bound_takes_from_the_least_recently_active_stream() -> None:
    history = store(per_stream=10, max_events=4)
    for event_id in ("a1", "a2", "a3"):
        history.record(C1, entry(event_id), NOW_MS)
    for event_id in ("b1", "b2"):
        history.record(C2, entry(event_id), NOW_MS)

    assert len(history) == 4
    assert history.resume(C1, "unknown", NOW_MS).frames == frames("a2", "a3")
    assert history.resume(C2, "unknown", NOW_MS).frames == frames("b1", "b2")


def test_events_older_than_the_window_are_not_replayed() -> None:
    history = store()
    history.record(C1, entry("old", age_ms=30_000), NOW_MS)
    history.record(C1, entry("new"), NOW_MS)

    assert history.resume(C1, "unknown", NOW_MS).frames == frames("old", "new")
    later = NOW_MS + 45_000  # "old" is now 75 s old, past the 60 s window
    assert history.resume(C1, "unknown", later).frames == frames("new")
    history.expire(NOW_MS + 120_000)
    assert len(history) == 0
    assert history.stream_count == 0


def test_an_event_already_past_the_window_is_still_new_but_not_kept() -> None:
    history = store()

    assert history.record(C1, entry("ancient", age_ms=WINDOW_MS + 1), NOW_MS) is True
    assert len(history) == 0


@pytest.mark.parametrize("bounds", [{"per_stream": 0}, {"max_events": 0}])
def test_a_zero_bound_disables_the_history(bounds: dict[str, int]) -> None:
    history = filled("e1", "e2", **bounds)

    assert len(history) == 0
    assert history.resume(C1, "e1", NOW_MS).found is False


@given(
    st.lists(st.integers(min_value=0, max_value=40), min_size=1, max_size=60),
    st.integers(min_value=1, max_value=20),
    st.data(),
)
def test_any_resume_is_an_in_order_duplicate_free_suffix_of_what_was_published(
    published: list[int], per_stream: int, data: st.DataObject
) -> None:
    history = store(per_stream=per_stream, max_events=1000)
    held: list[str] = []  # the model: the last `per_stream` ids, a re-published held id skipped
    for number in published:
        event_id = f"e{number}"
        assert history.record(C1, entry(event_id), NOW_MS) is (event_id not in held)
        if event_id not in held:
            held = [*held, event_id][-per_stream:]
    last = data.draw(st.sampled_from(held))

    replayed = history.resume(C1, last, NOW_MS).frames

    assert replayed == frames(*held[held.index(last) + 1 :])
    assert len(set(replayed)) == len(replayed)


@pytest.mark.parametrize(
    ("age_ms", "window_ms", "too_old"),
    [
        (0, 300_000, False),
        (299_999, 300_000, False),
        (300_001, 300_000, True),
        (6 * 3600 * 1000, 300_000, True),  # what an offset reset to the log's start would re-read
        (-5_000, 300_000, False),  # a producer clock a little ahead
        # A short (or disabled) history window still lets a live event that is a moment late through.
        (LIVE_HORIZON_FLOOR_MS - 1, 0, False),
        (LIVE_HORIZON_FLOOR_MS + 1, 0, True),
        (LIVE_HORIZON_FLOOR_MS + 1, 1_000, True),
    ],
)
def test_which_events_are_too_old_for_live_streams(age_ms: int, window_ms: int, too_old: bool) -> None:
    assert too_old_to_deliver(NOW_MS - age_ms, NOW_MS, window_ms) is too_old


def record(event_id: str, age_ms: int) -> ConsumerRecord[bytes, bytes]:
    value = dumps_json(
        {
            "eventId": event_id,
            "eventType": "aforo.invoice.created",
            "tenantId": "t1",
            "customerId": "c1",
            "occurredAt": "2026-11-23T09:00:00.000Z",
            "payload": {"invoiceId": event_id},
        }
    )
    return ConsumerRecord(
        "x.events.widget", 0, 0, NOW_MS - age_ms, 0, b"t1:c1", value, None, 5, len(value), []
    )


async def test_the_feed_delivers_fresh_events_and_keeps_old_ones_from_live_streams() -> None:
    settings = SseGatewaySettings(history_window_seconds=300)
    registry = ConnectionRegistry()
    history = HistoryStore(per_stream=10, max_events=100, window_ms=300_000)
    feed = WidgetFeed(settings, "x.events.widget", registry, history, wall_clock_ms=lambda: NOW_MS)
    stream = Connection(
        StreamGrant("t1", "c1", "es_1", "ek_1", session_ends_at=datetime.now(UTC) + timedelta(hours=1)),
        queue_frames=10,
        abort=lambda: None,
    )
    registry.add(stream)

    assert feed.handle(record("fresh", age_ms=1_000)) == 1
    assert feed.handle(record("from-the-log-start", age_ms=6 * 3600 * 1000)) == 0

    assert (await stream.take()).startswith(b"id: fresh\n")
    assert stream.queued == 0
    # Nor is the old event replayable: resume holds exactly the window.
    assert [frame.split(b"\n", 1)[0] for frame in history.resume(C1, "nope", NOW_MS).frames] == [b"id: fresh"]
