"""Flask: verify the current request from ``request.get_data()`` (the raw bytes, cached for later reads)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flask import request

from aforo_webhooks import DEFAULT_TOLERANCE_SECONDS, SIGNATURE_HEADER, verify


def verified_envelope(
    secrets: str | Sequence[str], tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS
) -> dict[str, Any]:
    """The envelope of the current request if it is a genuine delivery; raises WebhookVerificationError."""
    # get_data() before request.json/form: once Flask parses a form the raw stream is gone.
    return verify(
        request.get_data(cache=True), request.headers.get(SIGNATURE_HEADER), secrets, tolerance_seconds
    )
