"""The harness application: the receiver (`POST /receiver`), the page and the page's JSON routes.

The page never talks to the API directly (the API sends no CORS headers, and a remote API may sit
behind anything): it calls `/harness/...`, which forwards the token the page holds. Secrets the
harness generates stay in this process; the page sees a prefix only.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from importlib.resources import files
from typing import Any, Final

import aiohttp
from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from aforo.api.auth import AuthConfig, AuthConfigError
from aforo.api.dev_tokens import DevTokensRefusedError, mint_dev_token
from aforo.bridge.routes import load_routes
from aforo.harness.audit import explained
from aforo.harness.inbox import SCRIPTED_ANSWERS, FailureScript, Inbox, answer_for
from aforo.harness.settings import HarnessSettings
from aforo.harness.verification import CheckMode, ReceiverSecret, generate_secret, judge
from aforo.shared.http import error_response, json_response
from aforo.shared.kafka import create_producer
from aforo.shared.logging import get_logger
from aforo.shared.serde import dumps_json, loads_json
from aforo_webhooks import EVENT_ID_HEADER, SIGNATURE_HEADER

log = get_logger(__name__)

FORWARDED_REQUEST_HEADERS: Final = ("Authorization", "X-Tenant-Id", "Content-Type")
FORWARDED_RESPONSE_HEADERS: Final = ("Location", "X-Aforo-Event-Id", "WWW-Authenticate")
PROXIED_PREFIXES: Final = ("api/v1/", "internal/v1/")
STREAM_HEARTBEAT_SECONDS: Final = 15.0


class HarnessState:
    """Everything the harness holds, in memory: receiver secrets and mode, the script, the inbox."""

    def __init__(self, settings: HarnessSettings) -> None:
        self.settings = settings
        self.secrets: list[ReceiverSecret] = []
        self.mode = CheckMode.NORMAL
        self.script = FailureScript()
        self.inbox = Inbox()
        self.endpoints: dict[str, dict[str, Any]] = {}
        self.port = settings.http_port
        self.routes = load_routes(settings.routes_path, settings.source_topic_prefix)
        self.http: aiohttp.ClientSession | None = None
        self.producer: AIOKafkaProducer | None = None
        self._producer_lock = asyncio.Lock()

    def add_secret(self) -> ReceiverSecret:
        secret = ReceiverSecret(f"secret #{len(self.secrets) + 1}", generate_secret(), datetime.now(UTC))
        self.secrets.append(secret)
        return secret

    def dev_auth(self) -> AuthConfig | None:
        """The API's own HS256 dev setting, when this harness runs beside a local stack that uses it."""
        try:
            config = AuthConfig.from_env()
        except AuthConfigError:
            return None
        return config if config.mode == "hs256" and config.hs256_secret else None

    def view(self) -> dict[str, Any]:
        return {
            "apiUrl": self.settings.api_url,
            "receiverUrl": self.settings.receiver_url(self.port),
            "devTokens": self.dev_auth() is not None,
            "systemEvents": self.settings.system_events,
            "producerTopics": sorted(
                (
                    {"topic": topic, "eventType": route.system_event.event_type}
                    for topic, route in self.routes.items()
                    if route.system_event is not None
                ),
                key=lambda item: item["topic"],
            )
            if self.settings.system_events
            else [],
            "secrets": [secret.view() for secret in self.secrets],
            "mode": self.mode.value,
            "script": self.script.view(),
            "endpoints": list(self.endpoints.values()),
            "received": len(self.inbox.deliveries),
        }

    async def producer_started(self) -> AIOKafkaProducer:
        async with self._producer_lock:
            if self.producer is None:
                producer = create_producer(self.settings)
                await producer.start()
                self.producer = producer
            return self.producer


STATE = web.AppKey("state", HarnessState)


def _state(request: web.Request) -> HarnessState:
    return request.app[STATE]


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = loads_json(await request.read()) if request.body_exists else {}
    except ValueError:
        raise web.HTTPBadRequest(
            body=dumps_json({"error": {"code": "malformed_json", "message": "the body is not JSON"}}),
            content_type="application/json",
        ) from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(
            body=dumps_json(
                {"error": {"code": "malformed_json", "message": "the body is not a JSON object"}}
            ),
            content_type="application/json",
        )
    return body


# -- the receiver -----------------------------------------------------------------------------------


async def receive(request: web.Request) -> web.StreamResponse:
    """One delivery: judge it, store it, then answer as scripted (200, or 400 when it did not verify)."""
    state = _state(request)
    raw_body = await request.read()
    received_at = time.time()
    header = request.headers.get(SIGNATURE_HEADER)
    verdict = judge(
        raw_body, header, state.secrets, state.mode, received_at, state.settings.tolerance_seconds
    )
    scripted = state.script.take()
    try:
        envelope = loads_json(raw_body)
    except ValueError:
        envelope = None
    envelope = envelope if isinstance(envelope, dict) else {}
    status, label = answer_for(scripted, verdict, state.settings.slow_answer_seconds)
    answer = {"status": status, "label": label}
    state.inbox.add(
        {
            "receivedAt": datetime.fromtimestamp(received_at, UTC).isoformat(timespec="milliseconds"),
            "path": request.path,
            "eventId": request.headers.get(EVENT_ID_HEADER) or envelope.get("eventId"),
            "eventType": request.headers.get("X-Aforo-Event-Type") or envelope.get("eventType"),
            "customerId": envelope.get("customerId"),
            "attempt": request.headers.get("X-Aforo-Delivery-Attempt"),
            "verified": verdict.verified,
            "reason": verdict.reason,
            "explanation": verdict.explanation,
            "matched": list(verdict.matched),
            "mode": state.mode.value,
            "answer": answer,
            "headers": dict(request.headers),
            "body": raw_body.decode("utf-8", errors="replace"),
        }
    )
    await state.inbox.announce()
    if scripted == "slow":
        await asyncio.sleep(state.settings.slow_answer_seconds)
    if status == 400:
        return error_response(400, str(verdict.reason), verdict.explanation)
    return web.Response(status=status, text=label)


# -- the page's routes ------------------------------------------------------------------------------


async def index(_: web.Request) -> web.FileResponse:
    return web.FileResponse(str(files("aforo.harness").joinpath("static/index.html")))


async def get_state(request: web.Request) -> web.Response:
    return json_response(_state(request).view())


async def dev_token(request: web.Request) -> web.Response:
    state = _state(request)
    body = await _json_body(request)
    config = state.dev_auth()
    if config is None:
        return error_response(
            404,
            "dev_tokens_unavailable",
            "this harness was not started with the local stack's HS256 dev setting",
        )
    tenant = body.get("tenant")
    if not isinstance(tenant, str) or not tenant:
        return error_response(422, "validation_error", "tenant: a tenant id is required", "tenant")
    try:
        token = mint_dev_token(config, tenant_id=tenant, roles=["ADMIN"])
    except DevTokensRefusedError as error:
        return error_response(422, "dev_tokens_refused", str(error))
    return json_response({"token": token, "tenant": tenant})


async def _call_api(
    request: web.Request, method: str, path: str, *, body: bytes | None = None, params: Any = None
) -> tuple[int, dict[str, str], bytes]:
    state = _state(request)
    assert state.http is not None
    headers = {name: request.headers[name] for name in FORWARDED_REQUEST_HEADERS if name in request.headers}
    if body is not None:
        headers["Content-Type"] = "application/json"
    url = f"{state.settings.api_url.rstrip('/')}/{path}"
    try:
        async with state.http.request(
            method, url, data=body, params=params, headers=headers, allow_redirects=False
        ) as response:
            kept = {
                name: response.headers[name]
                for name in FORWARDED_RESPONSE_HEADERS
                if name in response.headers
            }
            kept["Content-Type"] = response.headers.get("Content-Type", "application/json")
            return response.status, kept, await response.read()
    except (aiohttp.ClientError, TimeoutError) as error:
        message = f"the API at {state.settings.api_url} did not answer: {type(error).__name__}"
        return (
            502,
            {"Content-Type": "application/json"},
            dumps_json({"error": {"code": "api_unreachable", "message": message}}),
        )


async def proxy(request: web.Request) -> web.Response:
    """Forward a page request to the API (only its /api/v1 and /internal/v1 routes), token included."""
    tail = request.match_info["tail"]
    if not tail.startswith(PROXIED_PREFIXES) or ".." in tail:
        return error_response(404, "not_found", "only /api/v1/ and /internal/v1/ are forwarded", "path")
    body = await request.read() if request.body_exists else None
    status, headers, payload = await _call_api(request, request.method, tail, body=body, params=request.query)
    return web.Response(status=status, body=payload, headers=headers)


async def create_secret(request: web.Request) -> web.Response:
    secret = _state(request).add_secret()
    return json_response(secret.view(), status=201)


async def register_endpoint(request: web.Request) -> web.Response:
    """Register the harness's receiver for a customer, signed with the newest receiver secret."""
    state = _state(request)
    body = await _json_body(request)
    if not state.secrets:
        state.add_secret()
    secret = state.secrets[-1]
    registration = {
        "endCustomerId": body.get("endCustomerId"),
        "url": state.settings.receiver_url(state.port),
        "events": body.get("events") or ["*"],
        "secret": secret.secret,
    }
    for field in ("maxRetryAttempts", "initialBackoffSeconds", "backoffMultiplier"):
        if field in body:
            registration[field] = body[field]
    status, headers, payload = await _call_api(
        request, "POST", "api/v1/webhook-endpoints", body=dumps_json(registration)
    )
    if status == 201:
        endpoint = loads_json(payload)
        state.endpoints[endpoint["endpointId"]] = {**endpoint, "secretLabels": [secret.label]}
        return json_response(state.endpoints[endpoint["endpointId"]], status=201)
    return web.Response(status=status, body=payload, headers=headers)


async def rotate_secret(request: web.Request) -> web.Response:
    """A new receiver secret, then the endpoint's: both verify while the old one keeps signing."""
    state = _state(request)
    endpoint_id = request.match_info["endpointId"]
    secret = state.add_secret()
    status, headers, payload = await _call_api(
        request,
        "PATCH",
        f"api/v1/webhook-endpoints/{endpoint_id}",
        body=dumps_json({"secret": secret.secret}),
    )
    if status != 200:
        state.secrets.remove(secret)
        return web.Response(status=status, body=payload, headers=headers)
    endpoint = loads_json(payload)
    labels = [*state.endpoints.get(endpoint_id, {}).get("secretLabels", []), secret.label]
    state.endpoints[endpoint_id] = {**endpoint, "secretLabels": labels}
    return json_response(state.endpoints[endpoint_id])


async def set_receiver(request: web.Request) -> web.Response:
    state = _state(request)
    body = await _json_body(request)
    if "mode" in body:
        try:
            state.mode = CheckMode(body["mode"])
        except ValueError:
            modes = ", ".join(mode.value for mode in CheckMode)
            return error_response(422, "validation_error", f"mode: one of {modes}", "mode")
    script = body.get("script")
    if script is not None:
        answer, count = (script or {}).get("answer"), (script or {}).get("count", 1)
        if answer not in SCRIPTED_ANSWERS:
            return error_response(
                422,
                "validation_error",
                f"script.answer: one of {', '.join(SCRIPTED_ANSWERS)}",
                "script.answer",
            )
        if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= 1000:
            return error_response(
                422, "validation_error", "script.count: an integer 0 to 1000", "script.count"
            )
        state.script.set(answer, count)
    return json_response(state.view())


async def fire_system(request: web.Request) -> web.Response:
    """Produce a record to a producer topic, as the billing platform would: the bridge takes it from there."""
    state = _state(request)
    if not state.settings.system_events:
        return error_response(404, "system_events_off", "producing SYSTEM events is for the local stack only")
    body = await _json_body(request)
    topic = body.get("topic")
    if topic not in state.routes or state.routes[topic].system_event is None:
        return error_response(
            422, "validation_error", "topic: a producer topic mapped to a SYSTEM event", "topic"
        )
    record = body.get("record")
    if not isinstance(record, dict):
        return error_response(422, "validation_error", "record: a JSON object", "record")
    for field in ("tenantId", "customerId"):
        if not isinstance(record.get(field), str) or not record[field]:
            return error_response(
                422, "validation_error", f"record.{field}: a non-empty string", f"record.{field}"
            )
    try:
        producer = await state.producer_started()
        key = f"{record['tenantId']}:{record['customerId']}".encode()
        metadata = await asyncio.wait_for(producer.send_and_wait(topic, dumps_json(record), key=key), 30)
    except (KafkaError, TimeoutError, OSError) as error:
        log.warning("harness_produce_failed", topic=topic, error=type(error).__name__)
        return error_response(
            503, "broker_unavailable", f"Kafka did not take the record: {type(error).__name__}"
        )
    return json_response(
        {"topic": topic, "partition": metadata.partition, "offset": metadata.offset}, status=202
    )


async def audit(request: web.Request) -> web.Response:
    status, headers, payload = await _call_api(
        request, "GET", "internal/v1/delivery-logs/by-customer", params=request.query
    )
    if status != 200:
        return web.Response(status=status, body=payload, headers=headers)
    page = loads_json(payload)
    return json_response({**page, "items": explained(page.get("items", []))})


async def inbox(request: web.Request) -> web.Response:
    return json_response({"items": _state(request).inbox.deliveries})


async def inbox_stream(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: every delivery after `Last-Event-ID` (or all), then each as it arrives."""
    state = _state(request)
    last = request.headers.get("Last-Event-ID") or request.query.get("after") or "0"
    sequence = int(last) if last.isdigit() else 0
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    await response.write(b"retry: 1000\n\n")
    try:
        while True:
            for delivery in state.inbox.since(sequence):
                sequence = delivery["seq"]
                await response.write(
                    f"id: {sequence}\nevent: delivery\ndata: ".encode() + dumps_json(delivery) + b"\n\n"
                )
            await state.inbox.wait_beyond(sequence, STREAM_HEARTBEAT_SECONDS)
            if len(state.inbox.deliveries) <= sequence:
                await response.write(b": heartbeat\n\n")
    except ConnectionResetError:
        pass  # the page went away; it resumes from Last-Event-ID when it comes back
    return response


async def healthz(_: web.Request) -> web.Response:
    return json_response({"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    """Ready when the API it points at answers its own /healthz (the page is useless without it)."""
    state = _state(request)
    assert state.http is not None
    try:
        async with state.http.get(
            f"{state.settings.api_url.rstrip('/')}/healthz", timeout=aiohttp.ClientTimeout(total=2)
        ) as response:
            api = response.status == 200
    except (aiohttp.ClientError, TimeoutError):
        api = False
    return json_response(
        {"status": "ready" if api else "not ready", "checks": {"api": api}}, 200 if api else 503
    )


def build_app(settings: HarnessSettings) -> web.Application:
    app = web.Application(client_max_size=8 * 1024 * 1024)
    state = HarnessState(settings)
    app[STATE] = state

    async def lifecycle(_: web.Application) -> Any:
        state.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        yield
        await state.http.close()
        if state.producer is not None:
            await state.producer.stop()

    app.cleanup_ctx.append(lifecycle)
    static = files("aforo.harness").joinpath("static")
    app.add_routes(
        [
            web.post("/receiver", receive),
            web.post("/receiver/{tag}", receive),
            web.get("/", index),
            web.static("/static", str(static)),
            web.get("/harness/state", get_state),
            web.post("/harness/dev-token", dev_token),
            web.post("/harness/secrets", create_secret),
            web.post("/harness/webhook/register", register_endpoint),
            web.post("/harness/webhook/{endpointId}/rotate", rotate_secret),
            web.put("/harness/receiver", set_receiver),
            web.post("/harness/fire/system", fire_system),
            web.get("/harness/audit", audit),
            web.get("/harness/inbox", inbox),
            web.get("/harness/inbox/stream", inbox_stream),
            web.route("*", "/harness/api/{tail:.*}", proxy),
            web.get("/healthz", healthz),
            web.get("/readyz", readyz),
        ]
    )
    return app
