"""The one webhook signing function, shared by the dispatcher (signs) and receivers/tests (verify).

Wire contract: ``X-Aforo-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, f"{t}." + raw body)>``.
While a secret is being rotated the header carries one ``v1=`` entry per valid secret, so a receiver
holding either the old or the new secret accepts the delivery. The format is deliberately the one
Stripe uses, so receivers can verify us with Stripe's libraries (the body must then be UTF-8, which
our JSON bodies are: Stripe signs the decoded text, we sign the raw bytes).
"""

import hashlib
import hmac
import time
from collections.abc import Sequence
from typing import Final

SIGNATURE_HEADER: Final = "X-Aforo-Signature"

_TIMESTAMP_KEY: Final = "t"
_SIGNATURE_SCHEME: Final = "v1"
# Unix seconds fit in 12 digits until the year 33658; the cap also keeps int() clear of Python's
# 4300-digit conversion limit, which would raise on a hostile header.
_MAX_TIMESTAMP_DIGITS: Final = 12


def _signed_payload(timestamp: int, body: bytes) -> bytes:
    """What the HMAC covers: `<t>.` (as the header writes `t`) and the raw body."""
    return f"{timestamp}.".encode("ascii") + body


def _hex_hmac(secret: str, signed_payload: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), signed_payload, hashlib.sha256).hexdigest()


def sign_payload(body: bytes, secrets: Sequence[str], timestamp: int) -> str:
    """Return the ``X-Aforo-Signature`` value for ``body``: one ``v1`` entry per secret, in order.

    Raises ValueError when there is nothing valid to sign with, because an unsigned webhook must
    never leave the dispatcher.
    """
    if isinstance(secrets, str):
        # A bare string is a Sequence[str] too; signing with each character would be a silent bug.
        raise TypeError("secrets must be a sequence of secrets, not a single string")
    if not secrets:
        raise ValueError("secrets: at least one signing secret is required")
    if not all(secrets):
        raise ValueError("secrets: a signing secret must not be empty")
    if timestamp < 0:
        raise ValueError(f"timestamp: must be unix seconds >= 0, got {timestamp}")
    signed_payload = _signed_payload(timestamp, body)  # once, however many secrets sign it
    signatures = [f"{_SIGNATURE_SCHEME}={_hex_hmac(secret, signed_payload)}" for secret in secrets]
    return f"{_TIMESTAMP_KEY}={timestamp}," + ",".join(signatures)


def _is_timestamp_text(value: str) -> bool:
    return 0 < len(value) <= _MAX_TIMESTAMP_DIGITS and value.isascii() and value.isdigit()


def _parse_header(header: str) -> tuple[int, list[str]] | None:
    """Split a header into (timestamp, v1 signatures); None when it is malformed.

    Unknown schemes (e.g. a future ``v2``) are ignored so that adding one does not break receivers.
    """
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, separator, value = item.strip().partition("=")
        if not separator:
            return None
        if key == _TIMESTAMP_KEY:
            if timestamp is not None or not _is_timestamp_text(value):
                return None
            timestamp = int(value)
        elif key == _SIGNATURE_SCHEME:
            signatures.append(value)
    if timestamp is None or not signatures:
        return None
    return timestamp, signatures


def verify_signature(
    body: bytes,
    header: str,
    secret: str,
    tolerance_seconds: int = 300,
    now: int | None = None,
) -> bool:
    """Whether ``header`` proves ``body`` was signed with ``secret`` within ``tolerance_seconds`` of now.

    Never raises on hostile input: a malformed header, an empty secret or a timestamp outside the
    tolerance (in either direction, so a captured request cannot be replayed later) are all False.
    """
    if not secret:
        return False
    parsed = _parse_header(header)
    if parsed is None:
        return False
    timestamp, signatures = parsed
    current = int(time.time()) if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        return False
    expected = _hex_hmac(secret, _signed_payload(timestamp, body)).encode("ascii")
    matched = False
    for candidate in signatures:
        # Bytes, not str: compare_digest raises TypeError on non-ASCII str, and this must not raise.
        # No early exit, so the time taken does not say which entry matched.
        matched |= hmac.compare_digest(expected, candidate.encode("utf-8", "surrogatepass"))
    return matched
