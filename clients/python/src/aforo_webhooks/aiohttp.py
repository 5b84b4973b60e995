"""aiohttp: verify a delivery from the request's raw bytes (``await request.read()``), before any parsing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiohttp import web

from aforo_webhooks import DEFAULT_TOLERANCE_SECONDS, SIGNATURE_HEADER, verify


async def verified_envelope(
    request: web.Request, secrets: str | Sequence[str], tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS
) -> dict[str, Any]:
    """The envelope of a genuine delivery; raises WebhookVerificationError otherwise."""
    return verify(await request.read(), request.headers.get(SIGNATURE_HEADER), secrets, tolerance_seconds)
