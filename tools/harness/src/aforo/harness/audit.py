"""The delivery trail in words: what each SKIPPED gate means for the integrator looking at it."""

from __future__ import annotations

from typing import Any, Final

SKIP_WORDS: Final = {
    "preference_disabled": "the customer turned this event type off in their notification preferences",
    "channel_not_chosen": "the customer's preference does not include this channel",
    "threshold": "the event did not reach the customer's threshold",
    "cooldown": "the customer's cooldown for this event type had not passed since the last one sent",
    "endpoint_filter": "this endpoint is not subscribed to this event type (its events list)",
    "endpoint_inactive": "this endpoint is disabled (by an admin, or after it answered 410 Gone)",
}


def explain(row: dict[str, Any]) -> str:
    """One sentence for a delivery-log row, as the audit section shows it."""
    status = row.get("status")
    if status == "SKIPPED":
        gate = str(row.get("skipReason") or "")
        words = SKIP_WORDS.get(gate, f"skipped by gate {gate or 'unknown'}")
        detail = row.get("error")
        return f"skipped: {words}" + (f" ({detail})" if detail else "")
    if status == "FAILED":
        return f"failed, no more attempts: {row.get('error') or 'no error recorded'}"
    if status == "RETRYING":
        return f"attempt failed ({row.get('error')}), retried at {row.get('nextAttemptAt')}"
    if status == "DELIVERED":
        return f"delivered, the receiver answered {row.get('responseStatus')}"
    if status == "PENDING":
        return "attempt in flight"
    return str(status)


def explained(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            **row,
            "explanation": explain(row),
            "replayable": row.get("status") in ("FAILED", "SKIPPED")
            and row.get("channel") == "WEBHOOK"
            and bool(row.get("endpointId")),
        }
        for row in rows
    ]
