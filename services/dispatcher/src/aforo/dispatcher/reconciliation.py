"""Which recorded deliveries are stranded, and how a stranded one is taken up again. Pure.

The delivery state is the truth about a delivery that is owed another attempt: a `delivery_state`
record says RETRYING, attempt n, next one due at `nextAttemptAt` (a delivery that ends at its first
attempt needs no record). Normally that next attempt waits on a delay topic, so nothing needs to look
at it. If that record is ever lost (a delay topic deleted or truncated, a bug that skipped a record,
offsets reset by an operator), the state alone still says the delivery is owed. A RETRYING delivery
whose `nextAttemptAt` passed more than `overdue_bound` ago is *stranded*: take up attempt n + 1
(unless a live reservation, a fresh PENDING row of that attempt, shows someone else has it).

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
from aforo.shared.delivery import Channel

DEFAULT_MINIMUM_OVERDUE_SECONDS: Final = 60.0


class ReconcileReason(StrEnum):
    """The `reason` label of `aforo_dispatcher_reconciled_total`."""

    RETRY_OVERDUE = "retry_overdue"
    """RETRYING, and its next attempt is overdue: the parked retry record was lost."""


@dataclass(frozen=True, slots=True)
class StrandedDelivery:
    """A delivery to take up again: which attempt, and why."""

    tenant_id: str
    event_id: str
    endpoint_id: str
    """The webhook endpoint, or for EMAIL/SMS/PAGERDUTY the contact destination."""
    attempt: int
    reason: ReconcileReason
    attempt_base: int = 0
    channel: Channel = Channel.WEBHOOK


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
        channel = Channel(state.get("channel") or Channel.WEBHOOK.value)
    except (KeyError, TypeError, ValueError):
        return None
    if status != "RETRYING":
        return None
    due = _aware(state.get("nextAttemptAt"))
    if due is None:
        return None
    updated_at = _aware(state.get("updatedAt"))
    waited = (due - updated_at).total_seconds() if updated_at is not None else 0.0
    if now - due <= overdue_bound(waited, minimum_seconds=minimum_seconds, tiers=tiers):
        return None
    base = state.get("attemptBase")
    return StrandedDelivery(
        tenant_id,
        event_id,
        endpoint_id,
        attempt + 1,
        ReconcileReason.RETRY_OVERDUE,
        attempt_base=base if isinstance(base, int) and 0 <= base <= attempt else 0,
        channel=channel,
    )


def candidate_cutoff(now: datetime, minimum_seconds: float) -> datetime:
    """Records due before this may be stranded; the query's coarse filter."""
    return now - timedelta(seconds=minimum_seconds)
