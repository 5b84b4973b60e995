"""Verify aforo-notify webhook deliveries: ``X-Aforo-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>]``.

Each ``v1`` is HMAC-SHA256 over ``f"{t}."`` followed by the raw request body, keyed with an endpoint's
signing secret. While a secret is rotated the header carries one ``v1`` per valid secret; a delivery
is genuine when any of them matches any secret the receiver holds. Standard library only, so a
receiver adds no dependency to check us.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Sequence
from typing import Any, Final, Literal

__all__ = [
    "DEFAULT_TOLERANCE_SECONDS",
    "EVENT_ID_HEADER",
    "SIGNATURE_HEADER",
    "Reason",
    "WebhookVerificationError",
    "verify",
]

SIGNATURE_HEADER: Final = "X-Aforo-Signature"
EVENT_ID_HEADER: Final = "X-Aforo-Event-Id"
DEFAULT_TOLERANCE_SECONDS: Final = 300

Reason = Literal[
    "header_malformed", "no_matching_signature", "timestamp_too_old", "timestamp_in_future", "body_not_json"
]

# Unix seconds fit in 12 digits until the year 33658; the cap keeps int() clear of huge hostile input.
_MAX_TIMESTAMP_DIGITS: Final = 12


class WebhookVerificationError(Exception):
    """The delivery is not proven genuine; ``reason`` says why in one stable word, the message in a sentence."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason: Reason = reason


def _parse(header: str) -> tuple[int, list[str]]:
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, separator, value = item.strip().partition("=")
        if not separator:
            raise WebhookVerificationError("header_malformed", f"header item {item.strip()!r} has no '='")
        if key == "t":
            if timestamp is not None:
                raise WebhookVerificationError("header_malformed", "header has more than one t=")
            if not (0 < len(value) <= _MAX_TIMESTAMP_DIGITS and value.isascii() and value.isdigit()):
                raise WebhookVerificationError("header_malformed", "t= is not unix seconds")
            timestamp = int(value)
        elif key == "v1":
            signatures.append(value)
        # Other schemes (a future v2) are ignored, so adding one never breaks a receiver.
    if timestamp is None:
        raise WebhookVerificationError("header_malformed", "header has no t=")
    if not signatures:
        raise WebhookVerificationError("header_malformed", "header has no v1= signature")
    return timestamp, signatures


def _secret_list(secrets: str | Sequence[str]) -> list[str]:
    listed = [secrets] if isinstance(secrets, str) else list(secrets)
    if not listed or any(not isinstance(secret, str) or not secret for secret in listed):
        raise ValueError("secrets: give at least one signing secret, none of them empty")
    return listed


def verify(
    raw_body: bytes,
    header: str | None,
    secrets: str | Sequence[str],
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> dict[str, Any]:
    """The delivered envelope, once ``header`` proves ``raw_body`` was signed with one of ``secrets``.

    ``raw_body`` must be the bytes as received: a body parsed and serialised again no longer matches.
    The timestamp must be within ``tolerance_seconds`` of ``now`` (default: the clock) either way, so a
    captured delivery cannot be replayed later. Raises WebhookVerificationError with the reason.
    """
    if not isinstance(raw_body, bytes | bytearray | memoryview):
        raise TypeError("raw_body must be the request's raw bytes, not a parsed or decoded body")
    keys = _secret_list(secrets)
    if not header:
        raise WebhookVerificationError("header_malformed", f"no {SIGNATURE_HEADER} header")
    timestamp, signatures = _parse(header)
    signed_payload = f"{timestamp}.".encode("ascii") + bytes(raw_body)
    matched = False
    for secret in keys:
        expected = (
            hmac.new(secret.encode("utf-8"), signed_payload, hashlib.sha256).hexdigest().encode("ascii")
        )
        for candidate in signatures:
            # Bytes, not str: compare_digest refuses non-ASCII str. No early exit, so the time taken
            # does not tell which entry matched.
            matched |= hmac.compare_digest(expected, candidate.encode("utf-8", "surrogatepass"))
    if not matched:
        raise WebhookVerificationError(
            "no_matching_signature",
            "no v1= signature matches the body with the given secrets (wrong secret, or a body that is not the raw bytes received)",
        )
    current = time.time() if now is None else now
    if timestamp < current - tolerance_seconds:
        raise WebhookVerificationError(
            "timestamp_too_old", f"signed {int(current - timestamp)} s ago, more than {tolerance_seconds} s"
        )
    if timestamp > current + tolerance_seconds:
        raise WebhookVerificationError(
            "timestamp_in_future",
            f"signed {int(timestamp - current)} s in the future, more than {tolerance_seconds} s (check the clock)",
        )
    try:
        envelope = json.loads(bytes(raw_body))
    except ValueError as error:
        raise WebhookVerificationError("body_not_json", f"the signed body is not JSON: {error}") from None
    if not isinstance(envelope, dict):
        raise WebhookVerificationError("body_not_json", "the signed body is not a JSON object")
    return envelope
