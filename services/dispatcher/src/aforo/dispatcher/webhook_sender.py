"""One webhook attempt: sign the envelope's exact bytes, POST them, report what happened.

The attempt is bounded by one total timeout (default 5 s) covering connect, send and the response
body prefix: the dispatcher never waits on a receiver's processing beyond it. Redirects are never
followed. The outcome is data (`AttemptResult`); deciding to retry is `retry_schedule`'s job.

What a customer reads in the delivery log about a failed connection is one of a fixed vocabulary
(`connection refused`, `connection reset`, `timeout: ...`, `TLS handshake failed`, `DNS lookup
failed`, `connection failed`): the operating system's own text (which may name internal hosts,
ports or resolver details) goes to the service log only (`AttemptResult.detail`). Inside the
outbound allowlist the log would otherwise be a port scanner's report.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Protocol

import aiohttp
from yarl import URL

from aforo.dispatcher.outbound import outbound_refusal_of
from aforo.dispatcher.ports import Sent, Unusable
from aforo.dispatcher.repositories import EndpointRecord
from aforo.shared.catalog import WEBHOOK_TEST_EVENT
from aforo.shared.delivery import Channel
from aforo.shared.envelope import EventEnvelope
from aforo.shared.signing import SIGNATURE_HEADER, sign_payload


class EndpointSource(Protocol):
    async def endpoint(self, tenant_id: str, endpoint_id: str) -> EndpointRecord | None: ...


RESPONSE_BODY_LIMIT: Final = 4096
"""The default of the `response_body_limit_bytes` setting: how much of a response the log keeps."""

CONNECTION_REFUSED: Final = "connection refused"
CONNECTION_RESET: Final = "connection reset"
TLS_FAILED: Final = "TLS handshake failed"
DNS_FAILED: Final = "DNS lookup failed"
CONNECTION_FAILED: Final = "connection failed"


def read_timed_out(timeout_seconds: float) -> str:
    """The error of an attempt that got no complete answer in time (the troubleshooting table's words)."""
    return f"timeout: Read timed out (no response within {timeout_seconds:g} s)"


@dataclass(frozen=True, slots=True)
class AttemptResult:
    status: int | None
    error: str | None
    response_body: bytes | None
    duration_ms: float
    retry_after: str | None
    refused: bool = False
    detail: str | None = None
    """The full transport error, for the service log only (never stored where a customer reads it)."""

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def connection_error_text(error: BaseException) -> str:
    """The fixed-vocabulary error of a failed connection. Pure."""
    if isinstance(error, aiohttp.ClientConnectorDNSError):
        return DNS_FAILED
    if isinstance(error, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError | ssl.SSLError):
        return TLS_FAILED
    if isinstance(error, aiohttp.ServerTimeoutError | TimeoutError):
        return "timeout: connect timed out"
    if isinstance(error, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return CONNECTION_RESET
    cause = error.os_error if isinstance(error, aiohttp.ClientConnectorError) else error
    if isinstance(cause, ConnectionRefusedError):
        return CONNECTION_REFUSED
    if isinstance(cause, ConnectionResetError | BrokenPipeError | asyncio.IncompleteReadError):
        return CONNECTION_RESET
    if isinstance(cause, ssl.SSLError):
        return TLS_FAILED
    if isinstance(cause, OSError) and cause.errno is not None and "getaddrinfo" in str(cause).lower():
        return DNS_FAILED
    return CONNECTION_FAILED


def delivery_headers(
    body: bytes, secrets: list[str], event_id: str, event_type: str, attempt: int, timestamp: int
) -> dict[str, str]:
    """The headers of one delivery: the signature over the exact body, the event and the attempt."""
    return {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign_payload(body, secrets, timestamp),
        "X-Aforo-Event-Id": event_id,
        "X-Aforo-Event-Type": event_type,
        "X-Aforo-Delivery-Attempt": str(attempt),
        "User-Agent": "aforo-notify-webhooks/1",
    }


async def send_webhook(
    session: aiohttp.ClientSession,
    *,
    url: str,
    body: bytes,
    secrets: list[str],
    event_id: str,
    event_type: str,
    attempt: int,
    timeout_seconds: float,
    response_body_limit: int = RESPONSE_BODY_LIMIT,
    now: float | None = None,
) -> AttemptResult:
    """POST one signed delivery; never raises for a receiver's or the network's failure."""
    timestamp = int(now if now is not None else time.time())
    headers = delivery_headers(body, secrets, event_id, event_type, attempt, timestamp)
    began = time.perf_counter()
    try:
        async with session.post(
            _target(url),
            data=aiohttp.BytesPayload(body),
            headers=headers,
            allow_redirects=False,
            timeout=_total_timeout(timeout_seconds),
        ) as response:
            prefix = await response.content.read(response_body_limit) if response_body_limit > 0 else None
            return AttemptResult(
                status=response.status,
                error=None
                if 200 <= response.status < 300
                else f"HTTP {response.status} {response.reason or ''}".strip(),
                response_body=prefix,
                duration_ms=(time.perf_counter() - began) * 1000,
                retry_after=response.headers.get("Retry-After"),
            )
    except TimeoutError as error:
        return _failure(read_timed_out(timeout_seconds), began, error)
    except aiohttp.ClientError as error:
        refusal = outbound_refusal_of(error)
        if refusal is not None:
            return _failure(f"refused: {refusal.reason}", began, error, refused=True)
        return _failure(connection_error_text(error), began, error)
    except (OSError, asyncio.IncompleteReadError) as error:
        return _failure(connection_error_text(error), began, error)


def _target(url: str) -> URL | str:
    """The endpoint's URL parsed once, not per attempt; one that does not parse is left to aiohttp,
    which fails the attempt with `InvalidUrlClientError` as before."""
    try:
        return _parsed(url)
    except ValueError:
        return url


@functools.lru_cache(maxsize=4096)
def _parsed(url: str) -> URL:
    return URL(url)


@functools.lru_cache(maxsize=64)
def _total_timeout(seconds: float) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=seconds)


def _failure(error: str, began: float, cause: BaseException, *, refused: bool = False) -> AttemptResult:
    return AttemptResult(
        status=None,
        error=error,
        response_body=None,
        duration_ms=(time.perf_counter() - began) * 1000,
        retry_after=None,
        refused=refused,
        detail=f"{type(cause).__name__}: {cause}"[:1000],
    )


class WebhookSender:
    """The WEBHOOK channel's `Sender`: the endpoint's URL and secrets from configuration, one signed POST."""

    channel = Channel.WEBHOOK

    def __init__(
        self,
        config: EndpointSource,
        session: aiohttp.ClientSession,
        *,
        timeout_seconds: float,
        response_body_limit: int = RESPONSE_BODY_LIMIT,
    ) -> None:
        self._config = config
        self._session = session
        self._timeout = timeout_seconds
        self._response_body_limit = response_body_limit

    async def send(
        self, envelope: EventEnvelope, body: bytes, destination_id: str, attempt: int
    ) -> Sent | Unusable:
        endpoint = await self._config.endpoint(envelope.tenant_id, destination_id)
        if endpoint is None:
            return Unusable("endpoint was deleted")
        secrets = endpoint.secrets_at(datetime.now(UTC))
        if not secrets:
            return Unusable("endpoint has no valid signing secret")
        if not endpoint.view.active and envelope.event_type != WEBHOOK_TEST_EVENT:
            return Unusable("endpoint is inactive")  # an explicit test still reaches an inactive one
        result = await send_webhook(
            self._session,
            url=endpoint.view.url,
            body=body,
            secrets=secrets,
            event_id=envelope.event_id,
            event_type=envelope.event_type,
            attempt=attempt,
            timeout_seconds=self._timeout,
            response_body_limit=self._response_body_limit,
        )
        return Sent(
            status=result.status,
            error=result.error,
            response_body=result.response_body,
            duration_ms=result.duration_ms,
            retry_after=result.retry_after,
            retry_config=endpoint.view.retry_config,
            refused=result.refused,
            detail=result.detail,
        )
