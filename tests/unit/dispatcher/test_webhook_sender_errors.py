"""What a failed connection says in the delivery log: a fixed vocabulary, the detail only in the
service log (issue #11: error texts made any local port inside the allowlist readable and scannable)."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from aforo.dispatcher.outbound import build_outbound_session, parse_cidr_allowlist
from aforo.dispatcher.webhook_sender import (
    CONNECTION_FAILED,
    CONNECTION_REFUSED,
    CONNECTION_RESET,
    DNS_FAILED,
    TLS_FAILED,
    AttemptResult,
    connection_error_text,
    send_webhook,
)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    outbound = build_outbound_session(
        parse_cidr_allowlist("127.0.0.1/32"), limit=4, limit_per_host=4, total_timeout_seconds=1.0
    )
    yield outbound
    await outbound.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def send(session: aiohttp.ClientSession, url: str, limit: int = 4096) -> AttemptResult:
    return await send_webhook(
        session,
        url=url,
        body=b"{}",
        secrets=["whsec_x"],
        event_id="e1",
        event_type="INVOICE_GENERATED",
        attempt=1,
        timeout_seconds=0.5,
        response_body_limit=limit,
    )


async def test_a_closed_port_says_connection_refused_and_names_no_port(
    session: aiohttp.ClientSession,
) -> None:
    port = closed_port()
    result = await send(session, f"http://127.0.0.1:{port}/hook")
    assert result.error == CONNECTION_REFUSED
    assert str(port) not in (result.error or "")
    assert str(port) in (result.detail or "")


async def test_a_url_that_does_not_parse_fails_the_attempt_instead_of_raising(
    session: aiohttp.ClientSession,
) -> None:
    result = await send(session, "http://[::1")
    assert result.status is None
    assert result.error == CONNECTION_FAILED
    assert (result.detail or "").startswith("InvalidUrlClientError")


async def test_a_server_that_hangs_up_says_connection_reset(session: aiohttp.ClientSession) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        result = await send(session, f"http://127.0.0.1:{port}/hook")
    finally:
        server.close()
    assert result.error == CONNECTION_RESET


async def test_a_slow_receiver_says_read_timed_out(session: aiohttp.ClientSession) -> None:
    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.Response()

    app = web.Application()
    app.router.add_post("/hook", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        result = await send(session, f"http://127.0.0.1:{port}/hook")
    finally:
        await runner.cleanup()
    assert result.error == "timeout: Read timed out (no response within 0.5 s)"


async def test_the_response_prefix_is_a_setting_and_zero_keeps_none(session: aiohttp.ClientSession) -> None:
    async def chatty(_: web.Request) -> web.Response:
        return web.Response(status=500, body=b"x" * 10_000)

    app = web.Application()
    app.router.add_post("/hook", chatty)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        kept = await send(session, f"http://127.0.0.1:{port}/hook", limit=100)
        none = await send(session, f"http://127.0.0.1:{port}/hook", limit=0)
    finally:
        await runner.cleanup()
    assert kept.response_body == b"x" * 100
    assert none.response_body is None
    assert none.status == 500


@pytest.mark.parametrize(
    ("error", "text"),
    [
        (ConnectionRefusedError(111, "Connection refused to 10.1.2.3:5432"), CONNECTION_REFUSED),
        (ConnectionResetError(104, "reset"), CONNECTION_RESET),
        (aiohttp.ServerDisconnectedError(), CONNECTION_RESET),
        (ssl.SSLError(1, "certificate verify failed"), TLS_FAILED),
        (OSError(-2, "getaddrinfo failed for internal.corp"), DNS_FAILED),
        (OSError(113, "No route to host 10.9.9.9"), CONNECTION_FAILED),
    ],
)
def test_connection_error_text_is_a_fixed_vocabulary(error: BaseException, text: str) -> None:
    assert connection_error_text(error) == text
