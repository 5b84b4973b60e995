"""CORS response headers for the embed routes. Pure.

The gateway never answers `Access-Control-Allow-Origin: *`: it echoes the one origin it has checked
against an embed key's allowed domains, with `Vary: Origin` so no cache serves one origin's answer
to another. A refused origin gets no `Access-Control-Allow-Origin` at all (the browser then hides the
response from the page, as it should). No credentials mode: the session JWT travels explicitly.
"""

from __future__ import annotations

from typing import Final

from aforo.shared.embed import normalise_origin

ALLOWED_METHODS: Final = "GET, POST, OPTIONS"
ALLOWED_HEADERS: Final = "Authorization, Content-Type, Last-Event-ID"
PREFLIGHT_MAX_AGE_SECONDS: Final = 600


def cors_headers(origin: str | None, allowed: bool) -> dict[str, str]:
    """Headers for an actual (non-preflight) response; always `Vary: Origin`."""
    headers = {"Vary": "Origin"}
    if allowed and origin is not None:
        headers["Access-Control-Allow-Origin"] = normalise_origin(origin)
    return headers


def preflight_headers(origin: str | None, allowed: bool) -> dict[str, str]:
    """Headers for an OPTIONS preflight: the allowed origin echoed, the methods and headers the SDK uses."""
    headers = cors_headers(origin, allowed)
    if "Access-Control-Allow-Origin" in headers:
        headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
        headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
        headers["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE_SECONDS)
    return headers
