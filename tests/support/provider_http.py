"""Real HTTP servers on 127.0.0.1 speaking the two provider contracts the SMS and PAGERDUTY senders
use: the Twilio Messages API and the PagerDuty Events API v2. Each answers from a script (a queue of
what the next requests get), validates requests as the real service does, and keeps every request it
received so a test asserts on what was really sent.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

RECIPIENT_MESSAGES = {
    21211: "The 'To' number is not a valid phone number.",
    21610: "Attempt to send to unsubscribed recipient",
    21614: "'To' number is not a valid mobile number",
}


@dataclass(frozen=True)
class Step:
    """One scripted answer: `status` (201/202 means the normal success), an optional Twilio error
    `code`, `retry_after` header, or `hang` seconds before answering (a read timeout at the client)."""

    status: int
    code: int | None = None
    retry_after: str | None = None
    hang: float = 0.0


@dataclass(frozen=True)
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    body: bytes
    form: dict[str, str] = field(default_factory=dict)
    json: Any = None


class ScriptedServer(ABC):
    """A provider's HTTP API on 127.0.0.1 answering from a script; subclasses speak one contract."""

    def __init__(self) -> None:
        self.script: deque[Step] = deque()
        self.requests: list[ReceivedRequest] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    @abstractmethod
    def app(self) -> web.Application:
        """The aiohttp application speaking the provider's contract."""

    async def start(self) -> ScriptedServer:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def plan(self, steps: Iterable[Step]) -> None:
        self.script.extend(steps)

    def next_step(self, success: int) -> Step:
        return self.script.popleft() if self.script else Step(success)

    async def wait_for(self, count: int, timeout: float = 30.0) -> list[ReceivedRequest]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.requests) >= count:
                return list(self.requests)
            await asyncio.sleep(0.05)
        raise AssertionError(f"expected {count} requests, got {len(self.requests)}")


def _error(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return web.json_response(body, status=status, headers=headers)


class TwilioServer(ScriptedServer):
    """`POST /2010-04-01/Accounts/{AccountSid}/Messages.json`, form encoded, HTTP Basic auth."""

    def __init__(self, account_sid: str, auth_token: str) -> None:
        super().__init__()
        self.account_sid = account_sid
        self.auth_token = auth_token

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self.create_message)
        return app

    def _authorised(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return (user, password) == (self.account_sid, self.auth_token)

    async def create_message(self, request: web.Request) -> web.Response:
        body = await request.read()
        form = {key: str(value) for key, value in (await request.post()).items()}
        self.requests.append(ReceivedRequest(request.path, dict(request.headers), body, form=form))
        if not self._authorised(request):
            return _error(401, 20003, "Authenticate", {"WWW-Authenticate": 'Basic realm="Twilio API"'})
        if request.match_info["sid"] != self.account_sid:
            return _error(404, 20404, "The requested resource was not found")
        if request.content_type != "application/x-www-form-urlencoded":
            return _error(400, 20001, "Unsupported content type")
        if "To" not in form:
            return _error(400, 21604, "A 'To' phone number is required.")
        if "From" not in form and "MessagingServiceSid" not in form:
            return _error(400, 21603, "A 'From' phone number is required.")
        if not form.get("Body"):
            return _error(400, 21602, "Message body is required.")
        step = self.next_step(201)
        if step.hang:
            await asyncio.sleep(step.hang)
        if step.status == 201:
            sid = f"SM{uuid.uuid4().hex}"
            return web.json_response(
                {
                    "sid": sid,
                    "account_sid": self.account_sid,
                    "to": form["To"],
                    "from": form.get("From"),
                    "messaging_service_sid": form.get("MessagingServiceSid"),
                    "body": form["Body"],
                    "status": "queued",
                    "num_segments": "1",
                    "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
                },
                status=201,
            )
        headers = {"Retry-After": step.retry_after} if step.retry_after else None
        if step.status == 429:
            return _error(429, 20429, "Too Many Requests", headers)
        if step.status >= 500:
            return _error(step.status, 20500, "Internal Server Error", headers)
        code = step.code or 21211
        return _error(step.status, code, RECIPIENT_MESSAGES.get(code, "Invalid parameter"))


SEVERITIES = {"critical", "error", "warning", "info"}


class PagerDutyServer(ScriptedServer):
    """`POST /v2/enqueue`, JSON; validates a trigger event as PagerDuty does."""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v2/enqueue", self.enqueue)
        return app

    @property
    def events_url(self) -> str:
        return f"{self.base_url}/v2/enqueue"

    async def enqueue(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            event = json.loads(body)
        except ValueError:
            event = None
        self.requests.append(ReceivedRequest(request.path, dict(request.headers), body, json=event))
        problems = _event_problems(event)
        if problems:
            return web.json_response(
                {"status": "invalid event", "message": "Event object is invalid", "errors": problems},
                status=400,
            )
        assert isinstance(event, dict)
        step = self.next_step(202)
        if step.hang:
            await asyncio.sleep(step.hang)
        if step.status == 202:
            dedup_key = event.get("dedup_key") or uuid.uuid4().hex
            return web.json_response(
                {"status": "success", "message": "Event processed", "dedup_key": dedup_key}, status=202
            )
        headers = {"Retry-After": step.retry_after} if step.retry_after else None
        if step.status == 400:
            return web.json_response(
                {"status": "invalid event", "message": "Event object is invalid", "errors": ["scripted"]},
                status=400,
            )
        if step.status == 429:
            return web.json_response(
                {
                    "status": "throttle event",
                    "message": "Requests for this service are arriving too quickly.",
                },
                status=429,
                headers=headers,
            )
        return web.Response(status=step.status, text="internal error", headers=headers)


def _event_problems(event: Any) -> list[str]:
    if not isinstance(event, dict):
        return ["the body is not a JSON object"]
    problems = []
    key = event.get("routing_key")
    if not isinstance(key, str) or len(key) != 32:
        problems.append("'routing_key' must be a 32 character integration key")
    if event.get("event_action") not in ("trigger", "acknowledge", "resolve"):
        problems.append("'event_action' is invalid")
    if event.get("event_action") == "trigger":
        payload = event.get("payload")
        if not isinstance(payload, dict):
            problems.append("'payload' is missing")
        else:
            summary = payload.get("summary")
            if not isinstance(summary, str) or not summary or len(summary) > 1024:
                problems.append("'payload.summary' is missing or longer than 1024 characters")
            if not payload.get("source"):
                problems.append("'payload.source' is missing")
            if payload.get("severity") not in SEVERITIES:
                problems.append("'payload.severity' is invalid")
    dedup = event.get("dedup_key")
    if dedup is not None and (not isinstance(dedup, str) or len(dedup) > 255):
        problems.append("'dedup_key' must be a string of at most 255 characters")
    return problems
