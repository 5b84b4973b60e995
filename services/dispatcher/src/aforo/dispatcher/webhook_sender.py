"""One webhook attempt: sign the envelope's exact bytes, POST them, report what happened.

The attempt is bounded by one total timeout (default 5 s) covering connect, send and the response
body prefix: the dispatcher never waits on a receiver's processing beyond it. Redirects are never
followed. The outcome is data (`AttemptResult`); deciding to retry is `retry_schedule`'s job.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Final

import aiohttp

from aforo.dispatcher.outbound import outbound_refusal_of
from aforo.shared.signing import SIGNATURE_HEADER, sign_payload

RESPONSE_BODY_LIMIT: Final = 4096


@dataclass(frozen=True, slots=True)
class AttemptResult:
    status: int | None
    error: str | None
    response_body: str | None
    duration_ms: float
    retry_after: str | None
    refused: bool = False

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


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
    now: float | None = None,
) -> AttemptResult:
    """POST one signed delivery; never raises for a receiver's or the network's failure."""
    timestamp = int(now if now is not None else time.time())
    headers = delivery_headers(body, secrets, event_id, event_type, attempt, timestamp)
    began = time.perf_counter()
    try:
        async with session.post(
            url,
            data=body,
            headers=headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=timeout_seconds),
        ) as response:
            prefix = await response.content.read(RESPONSE_BODY_LIMIT)
            return AttemptResult(
                status=response.status,
                error=None
                if 200 <= response.status < 300
                else f"HTTP {response.status} {response.reason or ''}".strip(),
                response_body=prefix.decode("utf-8", errors="replace"),
                duration_ms=(time.perf_counter() - began) * 1000,
                retry_after=response.headers.get("Retry-After"),
            )
    except TimeoutError:
        return _failure(f"timeout: no response within {timeout_seconds:g} s", began)
    except aiohttp.ClientError as error:
        refusal = outbound_refusal_of(error)
        if refusal is not None:
            return _failure(f"refused: {refusal.reason}", began, refused=True)
        return _failure(f"{type(error).__name__}: {error}", began)
    except (OSError, asyncio.IncompleteReadError) as error:
        return _failure(f"{type(error).__name__}: {error}", began)


def _failure(error: str, began: float, *, refused: bool = False) -> AttemptResult:
    return AttemptResult(
        status=None,
        error=error,
        response_body=None,
        duration_ms=(time.perf_counter() - began) * 1000,
        retry_after=None,
        refused=refused,
    )
