"""The audit trail's pages (`aforo.shared.audit_trail`), pure: what a batch of rows is paged as, and
which entries and pages a window reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from hypothesis import given
from hypothesis import strategies as st

from aforo.shared.audit_trail import (
    MAX_PAGE_ENTRIES,
    PAGE_SPAN,
    TrailWindow,
    millisecond_floor,
    page_documents,
    position_key,
)

BASE = datetime(2026, 5, 1, 10, 0, 30, tzinfo=UTC)


def row(row_id: Any, created_at: datetime, customer: str = "c1", tenant: str = "t1") -> dict[str, Any]:
    return {
        "_id": row_id,
        "tenantId": tenant,
        "endCustomerId": customer,
        "createdAt": created_at,
        "status": "DELIVERED",
    }


def test_a_batch_is_paged_per_customer_and_window_newest_first() -> None:
    rows = [
        row("a", BASE),
        row("b", BASE + timedelta(seconds=20, microseconds=1500)),
        row("c", BASE + timedelta(seconds=40)),  # the next minute's window
        row("d", BASE, customer="c2"),
        row("e", BASE, tenant="t2"),
        {"_id": "no-customer", "tenantId": "t1", "createdAt": BASE},
    ]

    pages = {(page["tenantId"], page["endCustomerId"], page["oldest"]): page for page in page_documents(rows)}

    assert set(pages) == {
        ("t1", "c1", BASE),
        ("t1", "c1", BASE + timedelta(seconds=40)),
        ("t1", "c2", BASE),
        ("t2", "c1", BASE),
    }
    first = pages["t1", "c1", BASE]
    assert first["newest"] == BASE + timedelta(seconds=20, milliseconds=1)  # stored at millisecond precision
    assert first["entries"] == [
        {"createdAt": BASE + timedelta(seconds=20, milliseconds=1), "rowId": "b"},
        {"createdAt": BASE, "rowId": "a"},
    ]


@given(
    st.lists(
        st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
        min_size=1,
        max_size=30,
    )
)
def test_every_row_is_on_one_page_no_longer_than_the_span(moments: list[datetime]) -> None:
    rows = [row(f"r{index}", moment) for index, moment in enumerate(moments)]

    pages = page_documents(rows)

    listed = sorted(entry["rowId"] for page in pages for entry in page["entries"])
    assert listed == sorted(item["_id"] for item in rows)
    for page in pages:
        assert page["newest"] - page["oldest"] < PAGE_SPAN
        assert [entry["createdAt"] for entry in page["entries"]] == sorted(
            (
                millisecond_floor(row["createdAt"])
                for row in rows
                if row["_id"] in {e["rowId"] for e in page["entries"]}
            ),
            reverse=True,
        )


def test_positions_order_like_mongodb_strings_before_object_ids() -> None:
    legacy = ObjectId("0" * 24)
    assert (
        position_key(BASE, "zzz")
        < position_key(BASE, legacy)
        < position_key(BASE + timedelta(milliseconds=1), "a")
    )


def test_a_window_holds_what_its_bounds_and_cursor_allow() -> None:
    window = TrailWindow(
        from_time=BASE + timedelta(microseconds=1500),  # rows from BASE + 1 ms on (what MongoDB compares)
        to_time=BASE + timedelta(seconds=10),
        before=(BASE + timedelta(seconds=5), "m"),
    )

    assert not window.holds(BASE, "a")
    assert window.holds(BASE + timedelta(milliseconds=1), "a")
    assert window.holds(BASE + timedelta(seconds=5), "l")
    assert not window.holds(BASE + timedelta(seconds=5), "m")
    assert not window.holds(BASE + timedelta(seconds=6), "a")
    assert TrailWindow().holds(BASE, "a")


def test_a_window_reads_the_pages_that_may_hold_its_entries() -> None:
    window = TrailWindow(
        from_time=BASE, to_time=BASE + timedelta(seconds=10), before=(BASE + timedelta(seconds=5), "m")
    )

    clauses = window.page_filter("t1", "c1")

    upper = BASE + timedelta(seconds=5, milliseconds=1)
    assert clauses == {
        "tenantId": "t1",
        "endCustomerId": "c1",
        "oldest": {"$lt": upper},
        "newest": {"$gt": BASE - timedelta(milliseconds=1), "$lt": upper + PAGE_SPAN},
    }
    assert TrailWindow().page_filter("t1", "c1") == {"tenantId": "t1", "endCustomerId": "c1"}


def test_a_burst_of_one_customer_s_rows_is_split_into_pages_of_bounded_size() -> None:
    rows = [
        row(f"r{index:06d}", BASE + timedelta(microseconds=index)) for index in range(MAX_PAGE_ENTRIES + 5)
    ]

    pages = page_documents(rows)

    assert [len(page["entries"]) for page in pages] == [MAX_PAGE_ENTRIES, 5]
    assert [entry for page in pages for entry in page["entries"]] == sorted(
        ({"createdAt": millisecond_floor(item["createdAt"]), "rowId": item["_id"]} for item in rows),
        key=lambda entry: (entry["createdAt"], entry["rowId"]),
        reverse=True,
    )
