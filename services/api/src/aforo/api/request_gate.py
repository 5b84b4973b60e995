"""When the API takes requests: not before its clients are connected, not once it is draining.

The gate answers 503 `not_accepting` while closed (health, metrics and the OpenAPI document pass
through), counts the requests it let in, and `close_and_wait` returns when the last of them has
answered, so a SIGTERM never cuts off a request whose broker acknowledgement is on its way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from aforo.shared.http import error_response


class RequestGate:
    def __init__(self, always_open: Collection[str]) -> None:
        self._always_open = frozenset(always_open)
        self._open = False
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def open(self) -> None:
        self._open = True

    async def close_and_wait(self) -> None:
        """Refuse new requests, then wait for those in flight (the caller bounds the wait)."""
        self._open = False
        await self._idle.wait()

    def middleware(self) -> Middleware:
        @web.middleware
        async def gate(request: web.Request, handler: Handler) -> web.StreamResponse:
            if request.path in self._always_open:
                return await handler(request)
            if not self._open:
                return error_response(503, "not_accepting", "the API is starting or shutting down; retry")
            self._in_flight += 1
            self._idle.clear()
            try:
                return await handler(request)
            finally:
                self._in_flight -= 1
                if self._in_flight == 0:
                    self._idle.set()

        return gate
