"""Bulk recovery of one target's FAILED deliveries in a time window, for webhook endpoints and contact
destinations alike (a destination's rows name it in `endpointId`, docs/channels.md).

Each FAILED delivery is replayed once per event (same eventId, so the same idempotency keys: the
webhook's event id, the e-mail's Message-ID, PagerDuty's dedup_key), leaving out events delivered to
the target since.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from aforo.api.context import ApiContext
from aforo.api.problems import ConflictError, InvalidRequestError
from aforo.api.redelivery import RecoverQuery, RecoveryAccepted, recovery_rows, replay_request
from aforo.shared.http import json_response
from aforo.shared.logging import get_logger

log = get_logger(__name__)


async def recover_failed(
    context: ApiContext, tenant_id: str, customer_id: str, target_id: str, query: RecoverQuery
) -> int:
    """Publish the replays of the target's FAILED deliveries in the window; how many were requested.

    A target belongs to one customer, so both queries go through the audit trail's index
    (tenant, customer, newest first) and filter the target's rows from the customer's: the delivery
    log keeps no index of its own for this rare, operator-driven read (each index costs the database
    as much as the row on every delivery's insert; see `aforo.shared.collections.DELIVERY_LOGS`).
    """
    window: dict[str, Any] = {"$gte": query.since}
    if query.until is not None:
        window["$lt"] = query.until
    limit = context.settings.recover_max_deliveries
    failed = await (
        context.delivery_logs.find(
            {
                "tenantId": tenant_id,
                "endCustomerId": customer_id,
                "createdAt": window,
                "endpointId": target_id,
                "status": "FAILED",
            },
            {"_id": 0},
        )
        .sort("createdAt", 1)
        .limit(limit + 1)
        .to_list()
    )
    if len(failed) > limit:
        raise InvalidRequestError(
            "too_many_deliveries",
            f"more than {limit} failed deliveries in this window; recover it in parts with `until`",
            "since",
        )
    event_ids = sorted({str(row.get("eventId")) for row in failed})
    delivered = await context.delivery_logs.distinct(
        "eventId",
        {
            "tenantId": tenant_id,
            "endCustomerId": customer_id,
            "endpointId": target_id,
            "status": "DELIVERED",
            "eventId": {"$in": event_ids},
        },
    )
    now = context.clock()
    requests = []
    for row in recovery_rows(failed, frozenset(str(event_id) for event_id in delivered)):
        try:
            requests.append(replay_request(row, now=now))
        except ConflictError as refusal:
            log.warning("recovery_row_skipped", delivery_id=row.get("deliveryId"), reason=refusal.message)
    await context.publisher.dispatch_requests(requests)
    return len(requests)


def recovery_accepted(requested: int) -> web.Response:
    """202 with how many replays were handed to the dispatcher."""
    return json_response(RecoveryAccepted(requested=requested).to_wire(), status=202)
