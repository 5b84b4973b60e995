"""Replaying one delivery and recovering an endpoint's failed deliveries (same eventIds)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

from aforo.shared.dispatch_requests import DispatchRequest
from tests.integration.api.calls import (
    ENDPOINTS,
    log_row,
    register,
)
from tests.support.api_harness import ApiUnderTest
from tests.support.delivery_rows import store_rows
from tests.support.kafka import TopicReader


async def test_replay_sends_the_stored_envelope_again_with_the_same_event_id(
    api: ApiUnderTest, dispatch_requests: TopicReader
) -> None:
    endpoint = await register(api, "c-replay")
    failed = log_row("t1", "c-replay", datetime.now(UTC), status="FAILED", endpoint_id=endpoint["endpointId"])
    skipped = log_row(
        "t1", "c-replay", datetime.now(UTC), status="SKIPPED", endpoint_id=endpoint["endpointId"]
    )
    await store_rows(api.mongo, [failed, skipped])

    for row in (failed, skipped):
        reply = await api.call("POST", f"/api/v1/deliveries/{row['deliveryId']}/replay")
        assert (reply.status, reply.body) == (202, b"")
        assert reply.headers["X-Aforo-Event-Id"] == row["eventId"]

    await dispatch_requests.until(
        lambda records: sum(b'"replayOf"' in r.value and b"c-replay" in r.value for r in records) >= 2,
        timeout=10,
    )
    requests = [
        DispatchRequest.from_json_bytes(r.value) for r in dispatch_requests.records if b"c-replay" in r.value
    ]
    by_origin = {request.replay_of: request for request in requests}
    request = by_origin[failed["deliveryId"]]
    assert (request.kind.value, request.endpoint_id) == ("replay", endpoint["endpointId"])
    assert request.envelope.to_wire() == json.loads(failed["envelopeJson"])
    assert skipped["deliveryId"] in by_origin


async def test_replay_refusals(api: ApiUnderTest) -> None:
    endpoint = await register(api, "c-replay-no")
    now = datetime.now(UTC)
    delivered = log_row("t1", "c-replay-no", now, status="DELIVERED", endpoint_id=endpoint["endpointId"])
    retrying = log_row("t1", "c-replay-no", now, status="RETRYING", endpoint_id=endpoint["endpointId"])
    email = log_row("t1", "c-replay-no", now, status="FAILED", channel="EMAIL")
    orphan = log_row("t1", "c-replay-no", now, status="FAILED", endpoint_id=str(uuid.uuid4()))
    await store_rows(api.mongo, [delivered, retrying, email, orphan])

    for row, code in (
        (delivered, "delivery_not_replayable"),
        (retrying, "delivery_not_replayable"),
        (email, "delivery_not_replayable"),
        (orphan, "endpoint_missing"),
    ):
        reply = await api.call("POST", f"/api/v1/deliveries/{row['deliveryId']}/replay")
        assert (reply.status, reply.error["code"]) == (409, code)
    unknown = await api.call("POST", f"/api/v1/deliveries/{uuid.uuid4()}/replay")
    assert (unknown.status, unknown.error["code"]) == (404, "delivery_not_found")


async def test_recover_replays_each_failed_event_since_once(
    api: ApiUnderTest, dispatch_requests: TopicReader
) -> None:
    endpoint = await register(api, "c-recover")
    endpoint_id = endpoint["endpointId"]
    start = datetime.now(UTC) - timedelta(minutes=30)
    old = log_row("t1", "c-recover", start - timedelta(hours=2), status="FAILED", endpoint_id=endpoint_id)
    twice_a = log_row(
        "t1", "c-recover", start + timedelta(minutes=1), status="FAILED", endpoint_id=endpoint_id
    )
    twice_b = log_row(
        "t1",
        "c-recover",
        start + timedelta(minutes=2),
        status="FAILED",
        endpoint_id=endpoint_id,
        event_id=twice_a["eventId"],
        attempt=2,
    )
    healed = log_row(
        "t1", "c-recover", start + timedelta(minutes=3), status="FAILED", endpoint_id=endpoint_id
    )
    healed_later = log_row(
        "t1",
        "c-recover",
        start + timedelta(minutes=4),
        status="DELIVERED",
        endpoint_id=endpoint_id,
        event_id=healed["eventId"],
        attempt=2,
    )
    lone = log_row("t1", "c-recover", start + timedelta(minutes=5), status="FAILED", endpoint_id=endpoint_id)
    other_endpoint = log_row(
        "t1", "c-recover", start + timedelta(minutes=5), status="FAILED", endpoint_id="x"
    )
    await store_rows(api.mongo, [old, twice_a, twice_b, healed, healed_later, lone, other_endpoint])

    reply = await api.call(
        "POST",
        f"{ENDPOINTS}/{endpoint_id}/recover",
        params={"since": start.isoformat().replace("+00:00", "Z")},
    )

    assert (reply.status, reply.json()) == (202, {"requested": 2})
    await dispatch_requests.until(
        lambda records: sum(endpoint_id.encode() in r.value and b'"replay"' in r.value for r in records) >= 2,
        timeout=10,
    )
    requests = [
        DispatchRequest.from_json_bytes(r.value)
        for r in dispatch_requests.records
        if endpoint_id.encode() in r.value and b'"replay"' in r.value
    ]
    assert [request.replay_of for request in requests] == [twice_b["deliveryId"], lone["deliveryId"]]
    assert {request.envelope.event_id for request in requests} == {twice_a["eventId"], lone["eventId"]}

    until = await api.call(
        "POST",
        f"{ENDPOINTS}/{endpoint_id}/recover",
        params={"since": "2000-01-01T00:00:00Z", "until": start.isoformat()},
    )
    assert until.json() == {"requested": 1}  # the old one only
    for params, field in (
        ({}, "since"),
        ({"since": "last week"}, "since"),
        ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, None),
    ):
        refused = await api.call("POST", f"{ENDPOINTS}/{endpoint_id}/recover", params=params)
        assert (refused.status, refused.error.get("field")) == (422, field), params
    unknown = await api.call(
        "POST", f"{ENDPOINTS}/{uuid.uuid4()}/recover", params={"since": "2026-01-01T00:00:00Z"}
    )
    assert unknown.status == 404
