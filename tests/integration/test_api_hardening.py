"""Issue #11's hostile requests against the real API process: each a 4xx naming the field (never a
500), no request value echoed, the security headers on every answer, tokens held to their rules."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
import pytest_asyncio

from tests.support.api_harness import JWT_SECRET, ApiUnderTest, Reply, start_api
from tests.support.stack import LocalStack

DEFINITIONS = "/api/v1/admin/event-definitions"
ENDPOINTS = "/api/v1/webhook-endpoints"
DELIVERY_LOGS = "/internal/v1/delivery-logs/by-customer"
EMIT = "/api/v1/notification-event-definitions/HARDENED/emit"
JSON = {"Content-Type": "application/json"}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api(local_stack: LocalStack, service_log_dir: Any) -> AsyncIterator[ApiUnderTest]:
    async with start_api(local_stack, service_log_dir) as running:
        reply = await running.call(
            "POST",
            DEFINITIONS,
            json={
                "eventType": "HARDENED",
                "displayName": "Hardened",
                "category": "Custom",
                "severity": "INFO",
                "defaultChannels": ["WEBHOOK"],
            },
        )
        assert reply.status == 201, reply.body
        yield running


def endpoint_json(**overrides: str) -> str:
    fields = {
        "endCustomerId": '"c1"',
        "url": f'"https://hooks.example.com/{uuid.uuid4().hex}"',
        "events": '["*"]',
        "secret": '"whsec_0123456789abcdef"',
        **overrides,
    }
    return "{" + ", ".join(f'"{name}": {value}' for name, value in fields.items()) + "}"


def rule_json(value: str) -> str:
    return (
        '{"eventType": "R_' + uuid.uuid4().hex[:6].upper() + '", "displayName": "R", "category": "Custom",'
        ' "severity": "INFO", "defaultChannels": ["WEBHOOK"], "triggerRule": {"sourceEvents":'
        ' ["INVOICE_GENERATED"], "match": {"all": [{"field": "amountDue", "op": "eq", "value": '
        + value
        + "}]}}}"
    )


def assert_refused(reply: Reply, status: int, code: str, field: str | None) -> None:
    assert reply.status == status, reply.body
    assert reply.headers["Content-Type"].startswith("application/json")
    assert (reply.error["code"], reply.error.get("field")) == (code, field), reply.error


# ----------------------------------------------------------------------------- 500s that are 4xx now


@pytest.mark.parametrize(
    ("method", "path", "raw", "status", "code", "field"),
    [
        ("POST", ENDPOINTS, b'{"url": ' + b"[" * 1000 + b"]" * 1000 + b"}", 400, "json_too_deep", "body"),
        ("POST", DEFINITIONS, b"[" * 50_000, 400, "json_too_deep", "body"),
        (
            "POST",
            EMIT,
            b'{"customerId": "c1", "payload": ' + b'{"a":' * 2000 + b"1" + b"}" * 2001,
            400,
            "json_too_deep",
            "body",
        ),
        (
            "POST",
            ENDPOINTS,
            endpoint_json(secret='"whsec_\\ud800_0123456789"').encode(),
            422,
            "validation_error",
            "secret",
        ),
        (
            "PATCH",
            f"{ENDPOINTS}/{uuid.uuid4()}",
            b'{"secret": "whsec_\\ud800_0123456789"}',
            422,
            "validation_error",
            "secret",
        ),
        (
            "POST",
            DEFINITIONS,
            rule_json('"\\udfff"').encode(),
            422,
            "validation_error",
            "triggerRule.match.all[0].value",
        ),
        (
            "POST",
            EMIT,
            b'{"customerId": "c1", "payload": {"\\ud800": 1}}',
            422,
            "validation_error",
            "payload",
        ),
        (
            "POST",
            EMIT,
            b'{"customerId": "c1", "payload": {"a": "\\ud800"}}',
            422,
            "validation_error",
            "payload.a",
        ),
    ],
    ids=[
        "deep-endpoint",
        "deep-definition",
        "deep-emit-payload",
        "surrogate-secret",
        "surrogate-secret-patch-missing-id",
        "surrogate-rule-value",
        "surrogate-payload-key",
        "surrogate-payload-value",
    ],
)
async def test_hostile_bodies_are_4xx_naming_the_field(
    api: ApiUnderTest, method: str, path: str, raw: bytes, status: int, code: str, field: str
) -> None:
    assert_refused(await api.call(method, path, data=raw, headers=JSON), status, code, field)


@pytest.mark.parametrize(
    ("method", "path", "params", "field"),
    [
        ("GET", DELIVERY_LOGS, {"endCustomerId": "c1", "from": "0001-01-01T00:00:00Z"}, "from"),
        ("GET", DELIVERY_LOGS, {"endCustomerId": "c1", "to": "9999-12-31T23:59:59.999999-14:00"}, "to"),
        ("POST", f"{ENDPOINTS}/{{endpointId}}/recover", {"since": "0001-01-01T00:00:00+14:00"}, "since"),
    ],
    ids=["from-year-1", "to-past-year-9999", "since-before-year-1"],
)
async def test_timestamps_at_the_edge_of_the_range_are_422(
    api: ApiUnderTest, method: str, path: str, params: dict[str, str], field: str
) -> None:
    if "{endpointId}" in path:
        created = await api.call("POST", ENDPOINTS, data=endpoint_json().encode(), headers=JSON)
        assert created.status == 201, created.body
        path = path.replace("{endpointId}", created.json()["endpointId"])
    assert_refused(await api.call(method, path, params=params), 422, "validation_error", field)


# ----------------------------------------------------------------------------- the HTTP surface


async def test_duplicate_keys_are_refused_not_last_one_wins(api: ApiUnderTest) -> None:
    raw = endpoint_json(url='"http://127.0.0.1:3001/a", "url": "http://10.0.0.1/b"').encode()
    assert_refused(await api.call("POST", ENDPOINTS, data=raw, headers=JSON), 400, "duplicate_key", "body")
    listed = await api.call("GET", ENDPOINTS, params={"endCustomerId": "c1"})
    assert all("10.0.0.1" not in item["url"] for item in listed.json()["items"])


@pytest.mark.parametrize(
    ("content_type", "raw", "status", "code"),
    [
        ("text/plain", None, 415, "unsupported_media_type"),
        ("application/x-www-form-urlencoded", None, 415, "unsupported_media_type"),
        ("application/xml", None, 415, "unsupported_media_type"),
        (None, None, 415, "unsupported_media_type"),
        ("application/json; charset=utf-16", None, 415, "unsupported_media_type"),
        ("application/json", "utf-16", 400, "malformed_json"),
        ("application/json", "bom", 400, "malformed_json"),
    ],
)
async def test_bodies_must_be_json_in_utf8(
    api: ApiUnderTest, content_type: str | None, raw: str | None, status: int, code: str
) -> None:
    text = endpoint_json()
    body = (
        text.encode("utf-16")
        if raw == "utf-16"
        else b"\xef\xbb\xbf" + text.encode()
        if raw == "bom"
        else text.encode()
    )
    headers = {"Content-Type": content_type} if content_type else {}
    reply = await api.session.post(
        f"{api.process.url}{ENDPOINTS}",
        data=body,
        headers={**api.headers("t1"), **headers},
        skip_auto_headers=() if content_type else ("Content-Type",),
    )
    async with reply:
        assert reply.status == status
        assert (await reply.json())["error"]["code"] == code


async def test_every_answer_carries_the_security_headers(api: ApiUnderTest) -> None:
    replies = [
        await api.call("GET", DEFINITIONS),
        await api.call("GET", f"{ENDPOINTS}/nope/whatever"),
        await api.call("POST", ENDPOINTS, data=b"{", headers=JSON),
        await api.call("GET", DEFINITIONS, headers={"Authorization": "Bearer nope"}),
    ]
    async with api.session.get(f"{api.process.url}/readyz") as response:
        public_headers = response.headers
    for headers in [reply.headers for reply in replies] + [public_headers]:
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Cache-Control"] == "no-store"
        assert "aiohttp" not in headers["Server"]
        assert "Python" not in headers["Server"]


async def test_errors_never_echo_request_values(api: ApiUnderTest) -> None:
    script = "<script>alert(1)</script>"
    for method, path in [
        ("PATCH", f"{ENDPOINTS}/{script}"),
        ("DELETE", f"{DEFINITIONS}/{script}"),
        ("POST", f"/api/v1/notification-event-definitions/{script}/emit"),
        ("GET", f"/internal/v1/delivery-logs/{script}"),
        ("PATCH", f"/api/v1/contact-destinations/{script}"),
        ("GET", f"/api/v1/admin/templates/{script}/EMAIL"),
    ]:
        reply = await api.call(method, path, json={"active": True})
        assert 400 <= reply.status < 500, (method, path, reply.body)
        assert b"script" not in reply.body, reply.body
    for value in ('"(<script>"', '"[<script>"'):
        rule = rule_json(value).replace('"op": "eq"', '"op": "regex"')
        reply = await api.call("POST", DEFINITIONS, data=rule.encode())
        assert reply.status == 422, reply.body
        assert b"script" not in reply.body, reply.body
    for value in ("<script>", "bogus<script>"):
        rule = rule_json('"x"').replace('"op": "eq"', f'"op": "{value}"')
        reply = await api.call("POST", DEFINITIONS, data=rule.encode())
        assert reply.status == 422, reply.body
        assert b"script" not in reply.body, reply.body


async def test_oversized_headers_are_json_and_the_token_is_neither_echoed_nor_logged(
    api: ApiUnderTest,
) -> None:
    secret_part = "tokenpart" + uuid.uuid4().hex
    host, port = api.process.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"GET {DEFINITIONS} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {secret_part * 1000}\r\n\r\n".encode()
    )
    answer = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    head = answer.partition(b"\r\n\r\n")[0]
    assert head.split(b" ")[1] == b"400"
    assert b"application/json" in head
    assert secret_part.encode() not in answer
    assert secret_part not in api.process.log_text()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"endCustomerId": "c\u00001"}, "endCustomerId"),
        ({"endCustomerId": "c\u202e1"}, "endCustomerId"),
        ({"endCustomerId": "c\u200b1"}, "endCustomerId"),
        ({"url": "http://bücher.example/hook"}, "url"),
    ],
    ids=["nul", "bidi-override", "zero-width-space", "idn-host"],
)
async def test_identifiers_and_hosts_refuse_lookalike_characters(
    api: ApiUnderTest, body: dict[str, str], field: str
) -> None:
    full = {
        "endCustomerId": "c1",
        "url": f"https://hooks.example.com/{uuid.uuid4().hex}",
        "events": ["*"],
        "secret": "whsec_0123456789abcdef",
        **body,
    }
    assert_refused(await api.call("POST", ENDPOINTS, json=full), 422, "validation_error", field)
    punycode = {**full, "endCustomerId": "c1", "url": f"http://xn--bcher-kva.example/{uuid.uuid4().hex}"}
    assert (await api.call("POST", ENDPOINTS, json=punycode)).status == 201


@pytest.mark.parametrize(
    ("claims", "code"),
    [
        ({"exp": str(int(time.time()) + 600)}, "invalid_token"),
        ({"exp": int(time.time()) + 100 * 365 * 86_400}, "token_lifetime_too_long"),
    ],
    ids=["numeric-string-exp", "a-century-long"],
)
async def test_tokens_need_numeric_times_and_a_bounded_lifetime(
    api: ApiUnderTest, claims: dict[str, Any], code: str
) -> None:
    now = int(time.time())
    token = jwt.encode({"sub": "u", "tenant_id": "t1", "roles": ["ADMIN"], "iat": now, **claims}, JWT_SECRET)
    reply = await api.call("GET", DEFINITIONS, headers={"Authorization": f"Bearer {token}"})
    assert reply.status == 401
    assert reply.error["code"] == code
