"""Starlette and FastAPI: verify a delivery from ``await request.body()`` (the raw bytes).

In FastAPI use it as a dependency, ``envelope: dict = Depends(WebhookVerifier(secrets))``: a forged or
stale delivery is answered 400 with the reason before the endpoint runs. Never declare the body as a
pydantic model on that route: FastAPI would parse it first, and you would verify a re-serialisation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request

from aforo_webhooks import DEFAULT_TOLERANCE_SECONDS, SIGNATURE_HEADER, WebhookVerificationError, verify


async def verified_envelope(
    request: Request, secrets: str | Sequence[str], tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS
) -> dict[str, Any]:
    """The envelope of a genuine delivery; raises WebhookVerificationError otherwise."""
    return verify(await request.body(), request.headers.get(SIGNATURE_HEADER), secrets, tolerance_seconds)


class WebhookVerifier:
    """A FastAPI dependency (or a plain callable) that answers 400 ``<reason>`` for a delivery that fails."""

    def __init__(
        self, secrets: str | Sequence[str], tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS
    ) -> None:
        self.secrets = secrets
        self.tolerance_seconds = tolerance_seconds

    async def __call__(self, request: Request) -> dict[str, Any]:
        try:
            return await verified_envelope(request, self.secrets, self.tolerance_seconds)
        except WebhookVerificationError as error:
            raise HTTPException(status_code=400, detail=error.reason) from None
