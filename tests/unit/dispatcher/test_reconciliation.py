"""When a recorded delivery counts as stranded, and which attempt the reconciler takes up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from aforo.dispatcher.reconciliation import ReconcileReason, overdue_bound, stranded_delivery

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def state(status: str, attempt: int = 1, **fields: Any) -> dict[str, Any]:
    return {
        "tenantId": "t1",
        "eventId": "e1",
        "endpointId": "ep1",
        "status": status,
        "attempt": attempt,
        **fields,
    }


@pytest.mark.parametrize(
    ("waited", "bound"),
    [(0.0, 60.0), (2.0, 60.0), (30.0, 64.0), (100.0, 256.0), (3600.0, 7200.0), (10**6, 7200.0)],
)
def test_the_bound_is_twice_the_tier_and_at_least_the_minimum(waited: float, bound: float) -> None:
    assert overdue_bound(waited) == timedelta(seconds=bound)


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        # A retry due 61 s ago after waiting 2 s: its record was lost -> attempt 2.
        (
            state(
                "RETRYING",
                1,
                updatedAt=NOW - timedelta(seconds=63),
                nextAttemptAt=NOW - timedelta(seconds=61),
            ),
            (2, ReconcileReason.RETRY_OVERDUE),
        ),
        # Due 59 s ago: within the bound, the retry consumer may still be on its way.
        (
            state(
                "RETRYING",
                1,
                updatedAt=NOW - timedelta(seconds=61),
                nextAttemptAt=NOW - timedelta(seconds=59),
            ),
            None,
        ),
        # A retry that waited 900 s may be late by up to 2 x its 900 s tier.
        (
            state(
                "RETRYING",
                2,
                updatedAt=NOW - timedelta(seconds=900 + 1000),
                nextAttemptAt=NOW - timedelta(seconds=1000),
            ),
            None,
        ),
        (
            state(
                "RETRYING",
                2,
                updatedAt=NOW - timedelta(seconds=900 + 1801),
                nextAttemptAt=NOW - timedelta(seconds=1801),
            ),
            (3, ReconcileReason.RETRY_OVERDUE),
        ),
        # Final, or unreadable: nothing to do.
        (state("DELIVERED", 1), None),
        (state("FAILED", 3), None),
        (state("RETRYING", 1), None),
        ({"status": "RETRYING", "nextAttemptAt": NOW - timedelta(days=1)}, None),
        # Naive datetimes (as some drivers return them) are UTC.
        (
            state("RETRYING", 1, nextAttemptAt=(NOW - timedelta(seconds=120)).replace(tzinfo=None)),
            (2, ReconcileReason.RETRY_OVERDUE),
        ),
    ],
)
def test_stranded_delivery(record: dict[str, Any], expected: tuple[int, ReconcileReason] | None) -> None:
    stranded = stranded_delivery(record, NOW)
    if expected is None:
        assert stranded is None
    else:
        assert stranded is not None
        assert (stranded.attempt, stranded.reason) == expected
        assert (stranded.tenant_id, stranded.event_id, stranded.endpoint_id) == ("t1", "e1", "ep1")


def test_a_replayed_chain_keeps_its_budget_base() -> None:
    record = state("RETRYING", 4, attemptBase=3, nextAttemptAt=NOW - timedelta(seconds=120))
    stranded = stranded_delivery(record, NOW)
    assert stranded is not None
    assert (stranded.attempt, stranded.attempt_base) == (5, 3)


def test_a_smaller_minimum_applies_to_short_tiers_only() -> None:
    record = state(
        "RETRYING", 1, updatedAt=NOW - timedelta(seconds=7), nextAttemptAt=NOW - timedelta(seconds=5)
    )
    assert stranded_delivery(record, NOW, minimum_seconds=3.0) is not None
    assert stranded_delivery(record, NOW, minimum_seconds=6.0) is None
