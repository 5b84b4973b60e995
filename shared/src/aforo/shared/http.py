"""HTTP pieces every service shares: the JSON error shape and the health/metrics routes.

Errors are always `{"error": {"code", "message", "field"?}}`, built by `error_response` alone.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from aforo.shared.metrics import render_metrics
from aforo.shared.serde import dumps_json


def error_response(status: int, code: str, message: str, field: str | None = None) -> web.Response:
    """The one way to answer an error."""
    error: dict[str, str] = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    return web.Response(status=status, body=dumps_json({"error": error}), content_type="application/json")


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
