"""A real HTTP webhook receiver for integration tests, run as its own process.

    python -m tests.support.webhook_receiver --port 3001

Each hook path (`/hooks/<name>`) answers from a plan set through `PUT /_plans/<name>`:
`{"statuses": [500, 500, 200], "default": 200, "sleepSeconds": 0, "retryAfter": null,
"failEvery": 0}` (statuses are used in turn, then `default`; with `failEvery` = n, every n-th
request of an event fails until its third attempt, for flapping-receiver tests; with
`"failFirstAttempt": true` every event's first attempt gets 500 and later ones `default`). For the
fault suite (keyed by `X-Aforo-Event-Id`, counting the requests that arrived, whatever attempt number
they carry): `"failFirst": n` answers 500 to the first n requests of every event, `"failEvents": [ids]`
answers 500 to every request of those events, `"hangFirstSeconds": s` holds the first request of every
event for s seconds before answering it (the answer is recorded as given, even if the sender gave up).
`GET /_received/<name>` returns what arrived: headers, body, monotonic and wall time, the answer.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from aforo.shared.serde import dumps_json, loads_json


@dataclass
class Plan:
    statuses: list[int] = field(default_factory=list)
    default: int = 200
    sleep_seconds: float = 0.0
    retry_after: str | None = None
    fail_every: int = 0
    fail_first_attempt: bool = False
    fail_first: int = 0
    fail_events: frozenset[str] = frozenset()
    hang_first_seconds: float = 0.0
    seen: dict[str, int] = field(default_factory=dict)


PLANS = web.AppKey("plans", dict[str, Plan])
RECEIVED = web.AppKey("received", dict[str, list[dict[str, Any]]])


def _answer(plan: Plan, request_headers: dict[str, str]) -> int:
    if plan.fail_first_attempt:
        return 500 if request_headers.get("X-Aforo-Delivery-Attempt", "1") == "1" else plan.default
    if plan.fail_first or plan.fail_events:
        event_id = request_headers.get("X-Aforo-Event-Id", "")
        seen = plan.seen.get(event_id, 0)
        if event_id in plan.fail_events or seen < plan.fail_first:
            return 500
        return plan.default
    if plan.fail_every:
        event_id = request_headers.get("X-Aforo-Event-Id", "")
        attempt = int(request_headers.get("X-Aforo-Delivery-Attempt", "1"))
        if attempt < 3 and zlib.crc32(f"{event_id}/{attempt}".encode()) % plan.fail_every == 0:
            return 500
        return plan.default
    return plan.statuses.pop(0) if plan.statuses else plan.default


async def hook(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    plan = request.app[PLANS].setdefault(name, Plan())
    body = await request.read()
    headers = dict(request.headers)
    status = _answer(plan, headers)
    event_id = headers.get("X-Aforo-Event-Id", "")
    first_of_event = plan.seen.get(event_id, 0) == 0
    plan.seen[event_id] = plan.seen.get(event_id, 0) + 1
    request.app[RECEIVED].setdefault(name, []).append(
        {
            "headers": headers,
            "body": body.decode(),
            "at": time.time(),
            "monotonic": time.monotonic(),
            "status": status,
        }
    )
    if plan.sleep_seconds:
        await asyncio.sleep(plan.sleep_seconds)
    if plan.hang_first_seconds and first_of_event:
        await asyncio.sleep(plan.hang_first_seconds)
    response_headers = {"Retry-After": plan.retry_after} if plan.retry_after and status in (429, 503) else {}
    return web.Response(status=status, text=f"answer {status}", headers=response_headers)


async def set_plan(request: web.Request) -> web.Response:
    spec = loads_json(await request.read())
    request.app[PLANS][request.match_info["name"]] = Plan(
        statuses=list(spec.get("statuses", [])),
        default=int(spec.get("default", 200)),
        sleep_seconds=float(spec.get("sleepSeconds", 0)),
        retry_after=spec.get("retryAfter"),
        fail_every=int(spec.get("failEvery", 0)),
        fail_first_attempt=bool(spec.get("failFirstAttempt", False)),
        fail_first=int(spec.get("failFirst", 0)),
        fail_events=frozenset(str(event_id) for event_id in spec.get("failEvents", [])),
        hang_first_seconds=float(spec.get("hangFirstSeconds", 0)),
    )
    return web.Response(status=204)


async def received(request: web.Request) -> web.Response:
    items = request.app[RECEIVED].get(request.match_info["name"], [])
    return web.Response(body=dumps_json(items), content_type="application/json")


async def healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok")


def build_app() -> web.Application:
    app = web.Application(client_max_size=8 * 1024 * 1024)
    app[PLANS] = {}
    app[RECEIVED] = {}
    app.add_routes(
        [
            web.post("/hooks/{name}", hook),
            web.put("/_plans/{name}", set_plan),
            web.get("/_received/{name}", received),
            web.get("/healthz", healthz),
        ]
    )
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3001)
    arguments = parser.parse_args()
    web.run_app(build_app(), host=arguments.host, port=arguments.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
