"""Which recorded deliveries are stranded, and how a stranded one is taken up again. Pure.

The delivery state record is the truth about a delivery. Normally a RETRYING delivery's next attempt
waits on a delay topic and an IN_FLIGHT one is owned under a lease, so nothing needs to look at
them. If that record is ever lost (a delay topic deleted or truncated, a bug that skipped a record,
offsets reset by an operator), the state alone still says the delivery is owed. A delivery whose next
attempt is overdue by more than its bound, and which no live lease protects, is *stranded*:

- RETRYING whose `nextAttemptAt` passed more than `overdue_bound` ago: take up attempt n + 1;
- IN_FLIGHT whose lease ran out more than `overdue_bound` ago: take over attempt n (its owner died
  and the Kafka record that would have brought it back is gone).

The bound is twice the largest delay tier the attempt could wait on (a busy tier's head may hold a
due record back by up to one tier), and never less than `minimum_seconds` (60 s by default): under
normal operation the retry consumer always gets there first, so the reconciler takes up nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from aforo.dispatcher.retry_schedule import DEFAULT_DELAY_TIERS, tier_for_delay

DEFAULT_MINIMUM_OVERDUE_SECONDS: Final = 60.0


class ReconcileReason(StrEnum):
    """The `reason` label of `aforo_dispatcher_reconciled_total`."""

    RETRY_OVERDUE = "retry_overdue"
    """RETRYING, and its next attempt is overdue: the parked retry record was lost."""
    LEASE_EXPIRED = "lease_expired"
    """IN_FLIGHT under a lease that expired long ago: its owner died and nothing brought it back."""


@dataclass(frozen=True, slots=True)
class StrandedDelivery:
    """A delivery to take up again: which attempt, and why."""

    tenant_id: str
    event_id: str
    endpoint_id: str
    attempt: int
    reason: ReconcileReason


def _aware(moment: Any) -> datetime | None:
    if not isinstance(moment, datetime):
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def overdue_bound(
    waited_seconds: float,
    *,
    minimum_seconds: float = DEFAULT_MINIMUM_OVERDUE_SECONDS,
    tiers: Sequence[int] = DEFAULT_DELAY_TIERS,
) -> timedelta:
    """How late an attempt that waited `waited_seconds` may be before it counts as stranded."""
    tier = tier_for_delay(max(0.0, waited_seconds), tiers)
    return timedelta(seconds=max(minimum_seconds, 2.0 * tier))


def stranded_delivery(
    state: Mapping[str, Any],
    now: datetime,
    *,
    minimum_seconds: float = DEFAULT_MINIMUM_OVERDUE_SECONDS,
    tiers: Sequence[int] = DEFAULT_DELAY_TIERS,
) -> StrandedDelivery | None:
    """The attempt to take up if this delivery state record is stranded, else None."""
    status = state.get("status")
    try:
        attempt = int(state["attempt"])
        tenant_id, event_id, endpoint_id = (
            str(state["tenantId"]),
            str(state["eventId"]),
            str(state["endpointId"]),
        )
    except (KeyError, TypeError, ValueError):
        return None
    updated_at = _aware(state.get("updatedAt"))
    if status == "RETRYING":
        due = _aware(state.get("nextAttemptAt"))
        if due is None:
            return None
        waited = (due - updated_at).total_seconds() if updated_at is not None else 0.0
        if now - due > overdue_bound(waited, minimum_seconds=minimum_seconds, tiers=tiers):
            return StrandedDelivery(
                tenant_id, event_id, endpoint_id, attempt + 1, ReconcileReason.RETRY_OVERDUE
            )
        return None
    if status == "IN_FLIGHT":
        lease_until = _aware(state.get("leaseUntil"))
        if lease_until is None:
            return None
        if now - lease_until > overdue_bound(0.0, minimum_seconds=minimum_seconds, tiers=tiers):
            return StrandedDelivery(tenant_id, event_id, endpoint_id, attempt, ReconcileReason.LEASE_EXPIRED)
        return None
    return None


def candidate_cutoff(now: datetime, minimum_seconds: float) -> datetime:
    """Records due (or leased) before this may be stranded; the query's coarse filter."""
    return now - timedelta(seconds=minimum_seconds)
