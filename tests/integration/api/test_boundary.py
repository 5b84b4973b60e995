"""What every route shares: body limits, malformed JSON, unknown routes, the public documents."""

from __future__ import annotations

from collections.abc import AsyncIterator

from tests.integration.api.calls import (
    ENDPOINTS,
    define,
    unique,
)
from tests.support.api_harness import ApiUnderTest


async def test_body_size_limit_is_413_and_malformed_json_is_400(api: ApiUnderTest) -> None:
    huge = {
        "customerId": "c1",
        "payload": {"blob": "x" * (64 * 1024)},
    }  # AFORO_API_MAX_REQUEST_BODY_BYTES=64 KiB
    event_type = unique()
    await define(api, event_type)

    too_large = await api.call("POST", f"/api/v1/notification-event-definitions/{event_type}/emit", json=huge)

    async def streamed() -> AsyncIterator[bytes]:  # no Content-Length: cut off while it is read
        yield b'{"x": "'
        for _ in range(70):
            yield b"y" * 1024
        yield b'"}'

    chunked = await api.call("POST", ENDPOINTS, data=streamed(), headers={"Content-Type": "application/json"})
    malformed = await api.call(
        "POST", ENDPOINTS, data=b'{"endCustomerId": ', headers={"Content-Type": "application/json"}
    )
    nan = await api.call(
        "POST", ENDPOINTS, data=b'{"maxRetryAttempts": NaN}', headers={"Content-Type": "application/json"}
    )
    empty = await api.call("POST", ENDPOINTS, data=b"", headers={"Content-Type": "application/json"})
    not_object = await api.call("POST", ENDPOINTS, json=[1, 2, 3])

    assert (too_large.status, too_large.error["code"]) == (413, "payload_too_large")
    assert (chunked.status, chunked.error["code"]) == (413, "payload_too_large")
    assert (malformed.status, malformed.error["code"]) == (400, "malformed_json")
    assert (nan.status, nan.error["code"]) == (400, "malformed_json")
    assert (empty.status, empty.error["code"]) == (400, "malformed_json")
    assert (not_object.status, not_object.error["code"]) == (422, "validation_error")


async def test_unknown_routes_and_methods_answer_json_errors(api: ApiUnderTest) -> None:
    unknown = await api.call("GET", "/api/v1/nothing-here")
    wrong_method = await api.call("PUT", ENDPOINTS, json={})
    anonymous = await api.call("GET", "/api/v1/nothing-here", headers={"Authorization": ""})

    assert (unknown.status, unknown.error["code"]) == (404, "not_found")
    assert (wrong_method.status, wrong_method.error["code"]) == (405, "method_not_allowed")
    assert "POST" in wrong_method.headers["Allow"]
    assert anonymous.status == 401  # unknown paths tell an unauthenticated caller nothing


async def test_openapi_and_health_are_public(api: ApiUnderTest) -> None:
    async with api.session.get(f"{api.process.url}/openapi.json") as response:
        assert response.status == 200
        document = await response.json()
    assert document["openapi"] == "3.1.0"
    assert "/api/v1/webhook-endpoints/{endpointId}/recover" in document["paths"]
