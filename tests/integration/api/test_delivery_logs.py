"""`/internal/v1/delivery-logs/by-customer`: newest first, cursor paging, filters."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from tests.integration.api.calls import (
    DELIVERY_LOGS,
    log_row,
)
from tests.support.api_harness import ApiUnderTest
from tests.support.delivery_rows import store_rows


async def test_delivery_logs_are_newest_first_and_cursor_paging_covers_every_row_once(
    api: ApiUnderTest,
) -> None:
    customer = f"c-logs-{uuid.uuid4().hex[:6]}"
    base = datetime(2026, 3, 1, tzinfo=UTC)
    # Pairs share a createdAt, so the _id tie-break is exercised.
    rows = [log_row("t1", customer, base + timedelta(seconds=index // 2)) for index in range(9)]
    noise = [log_row("t1", "c-someone-else", base), log_row("t-other", customer, base)]
    await store_rows(api.mongo, rows + noise)
    expected = [
        row["deliveryId"]
        for row in sorted(rows, key=lambda row: (row["createdAt"], row["_id"]), reverse=True)
    ]

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"endCustomerId": customer, "limit": "4", **({"cursor": cursor} if cursor else {})}
        reply = await api.call("GET", DELIVERY_LOGS, params=params)
        assert reply.status == 200, reply.body
        page = reply.json()
        seen += [item["deliveryId"] for item in page["items"]]
        pages += 1
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == expected
    assert pages == 3
    item = page["items"][-1]
    assert set(item) == {
        "deliveryId",
        "endCustomerId",
        "eventId",
        "eventType",
        "channel",
        "endpointId",
        "attempt",
        "status",
        "skipReason",
        "error",
        "responseStatus",
        "responseBody",
        "durationMs",
        "createdAt",
        "nextAttemptAt",
        # EMAIL/SMS/PAGERDUTY rows fill these (docs/channels.md); null on a webhook row.
        "destinationId",
        "maskedAddress",
        "providerReference",
        "note",
    }
    assert item["createdAt"] == "2026-03-01T00:00:00.000Z"


async def test_delivery_logs_filters(api: ApiUnderTest) -> None:
    customer = f"c-filter-{uuid.uuid4().hex[:6]}"
    base = datetime(2026, 4, 1, tzinfo=UTC)
    rows = [
        log_row("t1", customer, base, status="FAILED", event_type="TRIAL_EXPIRED"),
        log_row("t1", customer, base + timedelta(hours=1), status="DELIVERED"),
        log_row("t1", customer, base + timedelta(hours=2), status="SKIPPED"),
    ]
    await store_rows(api.mongo, rows)

    async def ids(**params: str) -> list[str]:
        reply = await api.call("GET", DELIVERY_LOGS, params={"endCustomerId": customer, **params})
        assert reply.status == 200, reply.body
        return [item["deliveryId"] for item in reply.json()["items"]]

    assert await ids(status="FAILED") == [rows[0]["deliveryId"]]
    assert await ids(eventId=rows[1]["eventId"]) == [rows[1]["deliveryId"]]
    assert await ids(eventType="TRIAL_EXPIRED") == [rows[0]["deliveryId"]]
    window = {"from": "2026-04-01T00:30:00Z", "to": "2026-04-01T04:00:00+02:00"}  # 00:30Z .. 02:00Z
    assert await ids(**window) == [rows[1]["deliveryId"]]
    assert await ids(**{"from": "2026-04-01T01:00:00.000Z"}) == [rows[2]["deliveryId"], rows[1]["deliveryId"]]

    for params, field in (
        ({"status": "LOST"}, "status"),
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-04-01T00:00:00"}, "to"),
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"cursor": "garbage!"}, "cursor"),
    ):
        reply = await api.call("GET", DELIVERY_LOGS, params={"endCustomerId": customer, **params})
        assert (reply.status, reply.error["field"]) == (422, field), params
    missing = await api.call("GET", DELIVERY_LOGS)
    assert (missing.status, missing.error["field"]) == (422, "endCustomerId")
