"""What SMS and PagerDuty attempts share: one POST through the SSRF-safe session, timed in two parts.

The connect timeout and the read timeout are separate on purpose: a connect that timed out or was
refused certainly sent nothing, while a read that timed out came *after* the request was written, so
the provider may have acted on it. SMS needs that distinction (it has no idempotency key).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import aiohttp

from aforo.dispatcher.outbound import outbound_refusal_of
from aforo.dispatcher.retry_schedule import parse_retry_after

RESPONSE_BODY_LIMIT: Final = 4096


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """The provider answered: its status, the start of its body, its `Retry-After` in seconds."""

    status: int
    body: bytes
    retry_after_seconds: float | None


@dataclass(frozen=True, slots=True)
class HttpFailure:
    """No answer. `sent` tells whether the request may have reached the provider (False: certainly not)."""

    error: str
    sent: bool
    refused: bool = False


async def post(
    session: aiohttp.ClientSession,
    url: str,
    *,
    connect_timeout_seconds: float,
    read_timeout_seconds: float,
    json: Mapping[str, Any] | None = None,
    form: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> HttpAnswer | HttpFailure:
    """POST once, never following redirects; never raises for the network's or provider's failures."""
    timeout = aiohttp.ClientTimeout(
        total=None, connect=connect_timeout_seconds, sock_read=read_timeout_seconds
    )
    try:
        async with session.post(
            url,
            json=json,
            data=form,
            headers=headers,
            allow_redirects=False,
            timeout=timeout,
        ) as response:
            body = await response.content.read(RESPONSE_BODY_LIMIT)
            header = response.headers.get("Retry-After")
            return HttpAnswer(
                response.status,
                body,
                None if header is None else parse_retry_after(header, datetime.now(UTC)),
            )
    except aiohttp.ConnectionTimeoutError:
        return HttpFailure(f"connect_timeout: no connection within {connect_timeout_seconds:g} s", sent=False)
    except aiohttp.ClientConnectorError as error:
        refusal = outbound_refusal_of(error)
        if refusal is not None:
            return HttpFailure(f"refused: {refusal.reason}", sent=False, refused=True)
        return HttpFailure(f"connect_error: {error}", sent=False)
    except TimeoutError:
        # A read timeout (aiohttp's SocketTimeoutError among them): the request was written.
        return HttpFailure(f"read_timeout: no answer within {read_timeout_seconds:g} s", sent=True)
    except aiohttp.ClientError as error:
        refusal = outbound_refusal_of(error)
        if refusal is not None:
            return HttpFailure(f"refused: {refusal.reason}", sent=False, refused=True)
        return HttpFailure(f"{type(error).__name__}: {error}", sent=True)
    except OSError as error:
        return HttpFailure(f"{type(error).__name__}: {error}", sent=True)


class HttpProviderClient:
    """What every sender speaking a provider's HTTP API holds: the session and the timeouts of its POSTs."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        connect_timeout_seconds: float = 5.0,
        read_timeout_seconds: float = 10.0,
    ) -> None:
        self._session = session
        self._connect_timeout = connect_timeout_seconds
        self._read_timeout = read_timeout_seconds

    async def post(
        self,
        url: str,
        *,
        json: Mapping[str, Any] | None = None,
        form: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> HttpAnswer | HttpFailure:
        return await post(
            self._session,
            url,
            connect_timeout_seconds=self._connect_timeout,
            read_timeout_seconds=self._read_timeout,
            json=json,
            form=form,
            headers=headers,
        )


def body_text(body: bytes) -> str:
    return body.decode("utf-8", errors="replace")
