"""Bulk recovery of one target's FAILED deliveries in a time window, for webhook endpoints and contact
destinations alike (a destination's rows name it in `endpointId`, docs/channels.md).

Each FAILED delivery is replayed once per event (same eventId, so the same idempotency keys: the
webhook's event id, the e-mail's Message-ID, PagerDuty's dedup_key), leaving out events delivered to
the target since.
"""

from __future__ import annotations

from aiohttp import web

from aforo.api.context import ApiContext
from aforo.api.problems import ConflictError, InvalidRequestError
from aforo.api.redelivery import RecoverQuery, RecoveryAccepted, recovery_rows, replay_request
from aforo.shared.audit_trail import TrailWindow
from aforo.shared.http import json_response
from aforo.shared.logging import get_logger

log = get_logger(__name__)


async def recover_failed(
    context: ApiContext, tenant_id: str, customer_id: str, target_id: str, query: RecoverQuery
) -> int:
    """Publish the replays of the target's FAILED deliveries in the window; how many were requested.

    A target belongs to one customer, so both reads walk the customer's audit trail (its pages,
    `aforo.shared.audit_trail`) for the target's rows: the delivery log keeps no index of its
    own for this rare, operator-driven read (an index costs the database on every delivery's insert;
    see `aforo.shared.collections.DELIVERY_LOGS`).
    """
    limit = context.settings.recover_max_deliveries
    failed = await context.audit_trail.newest_first(
        tenant_id,
        customer_id,
        TrailWindow(from_time=query.since, to_time=query.until),
        where={"endpointId": target_id, "status": "FAILED"},
        limit=limit + 1,
    )
    if len(failed) > limit:
        raise InvalidRequestError(
            "too_many_deliveries",
            f"more than {limit} failed deliveries in this window; recover it in parts with `until`",
            "since",
        )
    failed.reverse()  # oldest first
    event_ids = {str(row.get("eventId")) for row in failed}
    # Delivered since: an event delivered to the target after it failed there is not replayed (a
    # delivery ends at its FAILED row: only a later replay can deliver it, so the walk starts there).
    # The event ids (up to `recover_max_deliveries`) are tested here, not sent with every fetch.
    delivered = (
        await context.audit_trail.newest_first(
            tenant_id,
            customer_id,
            TrailWindow(from_time=failed[0]["createdAt"]),
            where={"endpointId": target_id, "status": "DELIVERED"},
            keep=lambda row: str(row.get("eventId")) in event_ids,
            projection={"eventId": 1, "createdAt": 1},
        )
        if event_ids
        else []
    )
    now = context.clock()
    requests = []
    for row in recovery_rows(failed, frozenset(str(row.get("eventId")) for row in delivered)):
        try:
            requests.append(replay_request(row, now=now))
        except ConflictError as refusal:
            log.warning("recovery_row_skipped", delivery_id=row.get("deliveryId"), reason=refusal.message)
    await context.publisher.dispatch_requests(requests)
    return len(requests)


def recovery_accepted(requested: int) -> web.Response:
    """202 with how many replays were handed to the dispatcher."""
    return json_response(RecoveryAccepted(requested=requested).to_wire(), status=202)
