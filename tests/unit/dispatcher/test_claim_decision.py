"""The claim rule of the delivery-state record, table-driven (the store only executes it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from aforo.dispatcher.repositories import ClaimStatus, claim_decision

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
LIVE = NOW + timedelta(seconds=10)
EXPIRED = NOW - timedelta(seconds=1)


def record(status: str, attempt: int, lease: datetime | None = None, base: int = 0) -> dict[str, Any]:
    return {"status": status, "attempt": attempt, "leaseUntil": lease, "attemptBase": base, "token": "x"}


@pytest.mark.parametrize(
    ("current", "attempt", "expected", "expected_attempt"),
    [
        (None, 1, ClaimStatus.CLAIMED, 1),  # first sight of the delivery
        (record("RETRYING", 1), 2, ClaimStatus.CLAIMED, 2),  # the parked retry is due
        (record("RETRYING", 2), 2, ClaimStatus.DONE, 0),  # a duplicate of an attempt already made
        (record("IN_FLIGHT", 1, LIVE), 1, ClaimStatus.BUSY, 0),  # someone is sending it now
        (record("IN_FLIGHT", 1, EXPIRED), 1, ClaimStatus.CLAIMED, 1),  # its owner died mid-send
        (record("IN_FLIGHT", 1, EXPIRED), 2, ClaimStatus.CLAIMED, 2),  # died after parking attempt 2
        (record("IN_FLIGHT", 1, LIVE), 2, ClaimStatus.BUSY, 0),  # attempt 1 not settled yet
        (record("IN_FLIGHT", 3, EXPIRED), 1, ClaimStatus.DONE, 0),  # the chain is further along
        (record("DELIVERED", 1), 1, ClaimStatus.DONE, 0),  # Kafka redelivery of a delivered event
        (record("FAILED", 3), 2, ClaimStatus.DONE, 0),
    ],
)
def test_claim_decision(
    current: dict[str, Any] | None, attempt: int, expected: ClaimStatus, expected_attempt: int
) -> None:
    claim = claim_decision(current, attempt, NOW)
    assert claim.status is expected
    if expected is ClaimStatus.CLAIMED:
        assert claim.attempt == expected_attempt
    if expected is ClaimStatus.BUSY:
        assert claim.lease_until == LIVE


def test_a_retry_keeps_its_budget_base() -> None:
    assert claim_decision(record("RETRYING", 4, base=3), 5, NOW).attempt_base == 3


@pytest.mark.parametrize(
    ("current", "expected", "attempt", "base"),
    [
        (None, ClaimStatus.CLAIMED, 1, 0),  # a SKIPPED delivery never attempted
        (record("FAILED", 3), ClaimStatus.CLAIMED, 4, 3),  # new attempts, fresh budget, same eventId
        (record("DELIVERED", 2), ClaimStatus.DONE, 0, 0),
        (record("RETRYING", 1), ClaimStatus.DONE, 0, 0),
    ],
)
def test_replay_decision(
    current: dict[str, Any] | None, expected: ClaimStatus, attempt: int, base: int
) -> None:
    claim = claim_decision(current, 0, NOW, replay=True)
    assert claim.status is expected
    if expected is ClaimStatus.CLAIMED:
        assert (claim.attempt, claim.attempt_base) == (attempt, base)
