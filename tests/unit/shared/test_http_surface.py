"""The HTTP surface every service's runner gives it: security headers on every response, and
aiohttp's own refusals (over-long headers, garbage request lines) answered as JSON without echoing
or logging what the client sent."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from structlog.testing import capture_logs

from aforo.shared.http import SERVER_HEADER
from aforo.shared.lifecycle import Service, ServiceRunner
from aforo.shared.serde import loads_json
from aforo.shared.settings import ServiceSettings

SECRET_TOKEN = "eyJhbGciOiJIUzI1NiJ9.secret-part-that-must-never-be-echoed"


class Settings(ServiceSettings):
    http_port: int = 0


class WebService(Service):
    name = "web"

    async def start(self) -> None:
        return None

    async def readiness_checks(self) -> dict[str, bool]:
        return {"dependency": True}

    async def drain(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def add_routes(self, app: web.Application) -> None:
        async def hello(_: web.Request) -> web.Response:
            return web.json_response({"hello": "world"})

        async def cached(_: web.Request) -> web.Response:
            return web.Response(text="x", headers={"Cache-Control": "public, max-age=300"})

        async def stream(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse()
            await response.prepare(request)
            await response.write(b"data: 1\n\n")
            return response

        app.router.add_get("/hello", hello)
        app.router.add_get("/cached", cached)
        app.router.add_get("/stream", stream)


@pytest_asyncio.fixture
async def base_url() -> AsyncIterator[str]:
    runner = ServiceRunner(WebService(), Settings(http_host="127.0.0.1"))
    await runner.start_http()
    try:
        yield f"http://127.0.0.1:{runner.bound_port}"
    finally:
        await runner._close_http()


@pytest.mark.parametrize("path", ["/hello", "/healthz", "/readyz", "/metrics", "/stream", "/nowhere"])
async def test_every_response_carries_the_security_headers(base_url: str, path: str) -> None:
    async with aiohttp.ClientSession() as session, session.get(base_url + path) as response:
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Server"] == SERVER_HEADER
        assert "aiohttp" not in response.headers["Server"]
        assert "Python" not in response.headers["Server"]


async def test_a_route_may_choose_its_own_caching(base_url: str) -> None:
    async with aiohttp.ClientSession() as session, session.get(base_url + "/cached") as response:
        assert response.headers["Cache-Control"] == "public, max-age=300"
        assert response.headers["X-Content-Type-Options"] == "nosniff"


async def raw_request(base_url: str, request: bytes) -> tuple[str, dict[str, str], bytes]:
    host, port = base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {
        name.lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)
    }
    return status_line, headers, body


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /hello HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + SECRET_TOKEN.encode() * 300
        + b"\r\n\r\n",
        b"GET /hello HTTP/1.1\r\nHost: x\r\nX-Junk: " + b"a" * 9000 + SECRET_TOKEN.encode() + b"\r\n\r\n",
        b"GET /" + b"a" * 9000 + SECRET_TOKEN.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /hello HTTP/1.1\r\nHost: x\r\nBad Header Name: " + SECRET_TOKEN.encode() + b"\r\n\r\n",
    ],
    ids=["long authorization", "long header", "long request line", "malformed header"],
)
async def test_aiohttp_refusals_are_json_and_never_echo_or_log_the_request(
    base_url: str, request_bytes: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with capture_logs() as logged:
        status_line, headers, body = await raw_request(base_url, request_bytes)

    status = int(status_line.split(" ")[1])
    assert 400 <= status < 500
    assert headers["content-type"].startswith("application/json")
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["server"] == SERVER_HEADER
    error: dict[str, Any] = loads_json(body)["error"]
    assert set(error) == {"code", "message"}
    assert b"secret-part" not in body
    assert b"Bearer" not in body
    assert "secret-part" not in repr(logged)
    assert "secret-part" not in caplog.text
    assert not [r for r in caplog.records if r.exc_info]
    assert [entry["event"] for entry in logged] == ["http_request_unparseable"]
