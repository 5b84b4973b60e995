"""HTTP pieces every service shares: the JSON error shape, the response headers, the health routes.

Errors are always `{"error": {"code", "message", "field"?}}`, built by `error_response` alone, also
for the requests aiohttp refuses before any route or middleware sees them (a header over 8 KB, a
malformed request line): `JsonErrorAppRunner` answers those as JSON and logs only their kind, since
aiohttp's own text would echo (and log) the first bytes of the offending line, an `Authorization`
header included.

Every response carries `X-Content-Type-Options: nosniff`, `Cache-Control: no-store` unless the route
chose a caching policy (the public SDK script does), and a `Server` header without a version.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Final

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server

from aforo.shared.logging import get_logger
from aforo.shared.metrics import render_metrics
from aforo.shared.serde import dumps_json

log = get_logger(__name__)

SERVER_HEADER: Final = "aforo-notify"
"""What `Server` says: the product, never the Python or aiohttp version an attacker would look up."""


def error_response(status: int, code: str, message: str, field: str | None = None) -> web.Response:
    """The one way to answer an error."""
    error: dict[str, str] = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    response = web.Response(status=status, body=dumps_json({"error": error}), content_type="application/json")
    set_security_headers(response)
    return response


DEPENDENCY_RETRY_AFTER_SECONDS: Final = 5
"""What a 503 for a missing dependency tells clients to wait: about one readiness-check interval."""


def dependency_unavailable_response(dependency: str) -> web.Response:
    """503 naming the dependency (`mongodb`, `kafka`) in its code, with `Retry-After`; no trace."""
    response = error_response(
        503,
        f"{dependency}_unavailable",
        f"{_DEPENDENCY_NAMES.get(dependency, dependency)} is unavailable; retry",
    )
    response.headers["Retry-After"] = str(DEPENDENCY_RETRY_AFTER_SECONDS)
    return response


_DEPENDENCY_NAMES: Final = {"mongodb": "MongoDB", "kafka": "the event broker (Kafka)"}


def json_response(body: object, status: int = 200) -> web.Response:
    return web.Response(status=status, body=dumps_json(body), content_type="application/json")


def health_routes(
    is_alive: Callable[[], bool], is_ready: Callable[[], Awaitable[dict[str, bool]]]
) -> list[web.RouteDef]:
    """`/healthz` (the loop turns and the worker lives), `/readyz` (dependencies answer), `/metrics`."""

    async def healthz(_: web.Request) -> web.Response:
        if is_alive():
            return json_response({"status": "alive"})
        return json_response({"status": "dead"}, status=503)

    async def readyz(_: web.Request) -> web.Response:
        checks = await is_ready()
        ready = bool(checks) and all(checks.values())
        return json_response(
            {"status": "ready" if ready else "not ready", "checks": checks}, 200 if ready else 503
        )

    async def metrics(_: web.Request) -> web.Response:
        body, content_type = render_metrics()
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    return [web.get("/healthz", healthz), web.get("/readyz", readyz), web.get("/metrics", metrics)]


def set_security_headers(response: web.StreamResponse) -> None:
    """nosniff, no-store unless the route set a caching policy, and a versionless `Server`."""
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Server"] = SERVER_HEADER
    response.headers.setdefault("Cache-Control", "no-store")


async def security_headers_on_prepare(_: web.Request, response: web.StreamResponse) -> None:
    """`Application.on_response_prepare` hook: every routed response gets `set_security_headers`."""
    set_security_headers(response)


_CODE_FOR_PROTOCOL_STATUS: Final = {
    400: "bad_request",
    413: "payload_too_large",
    414: "uri_too_long",
    431: "headers_too_large",
    500: "internal_error",
}


class JsonErrorRequestHandler(RequestHandler):
    """aiohttp's connection handler, with its refusals of unparseable requests answered as JSON."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # The exception's text quotes the request (the first 100 bytes of an over-long header line):
        # only its kind is logged, and the client gets a fixed message.
        if status >= 500:
            log.error("http_request_failed", status=status, error=type(exc).__name__ if exc else None)
            text = "the request failed; it has been logged"
        else:
            log.info("http_request_unparseable", status=status, error=type(exc).__name__ if exc else None)
            text = "the request line or headers are malformed or too large"
        if request.writer.output_size > 0:
            raise ConnectionError("the response has already started; the connection is closed")
        try:
            phrase = HTTPStatus(status).phrase.lower().replace(" ", "_")
        except ValueError:
            phrase = "http_error"
        response = error_response(status, _CODE_FOR_PROTOCOL_STATUS.get(status, phrase), text)
        response.force_close()
        return response


class _JsonErrorServer(Server):
    def __call__(self) -> RequestHandler:
        return JsonErrorRequestHandler(self, loop=self._loop, **self._kwargs)


class JsonErrorAppRunner(web.AppRunner):
    """`web.AppRunner` whose connections use `JsonErrorRequestHandler`."""

    async def _make_server(self) -> Server:
        server = await super()._make_server()
        # aiohttp has no hook for the handler class: rebuild the server it made with the same settings.
        return _JsonErrorServer(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=server._loop,
            **server._kwargs,
        )
