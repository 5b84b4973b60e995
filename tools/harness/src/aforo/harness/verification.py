"""What the harness's receiver concludes about one delivery: verified or not, and why, in words.

The verifier (`aforo_webhooks.verify`) gives a reason code; the harness knows more than a receiver
(every secret it generated, and whether it altered the body on purpose), so it can tell a wrong secret
from an altered body, which is the question an integrator staring at a ❌ actually has.
"""

from __future__ import annotations

import secrets as random_secrets
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Final

from aforo_webhooks import WebhookVerificationError, verify

SECRET_PREFIX: Final = "whsec_"  # noqa: S105 - a prefix, not a secret


class CheckMode(StrEnum):
    """How the receiver checks: honestly, or wrongly on purpose to show what a failure looks like."""

    NORMAL = "normal"
    WRONG_SECRET = "wrong-secret"  # noqa: S105 - a mode name; verify with a secret the endpoint does not sign with
    ALTERED_BODY = "altered-body"  # verify a re-serialised body, as a framework that parsed it first would


@dataclass(frozen=True)
class ReceiverSecret:
    label: str
    secret: str = field(repr=False)
    created_at: datetime

    def view(self) -> dict[str, str]:
        """What the page may show: the label, when, and a prefix that identifies it without revealing it."""
        return {
            "label": self.label,
            "createdAt": self.created_at.isoformat(),
            "preview": self.secret[:10] + "…",
        }


def generate_secret() -> str:
    return SECRET_PREFIX + random_secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Verdict:
    verified: bool
    reason: str | None  # wrong_secret, timestamp_outside_tolerance, body_altered, header_malformed, ...
    explanation: str
    matched: tuple[str, ...] = ()  # labels of the secrets whose signature is in the header


REASON_WORDS: Final = {
    "wrong_secret": "wrong secret: no v1= signature matches with the secret being checked",
    "body_altered": "body altered: the signature matches the bytes as sent, not the body that was checked",
    "timestamp_outside_tolerance": "timestamp outside tolerance",
    "header_malformed": "header malformed",
    "no_secret": "no secret: generate one in the Webhook section first",
    "body_not_json": "the signed body is not a JSON object",
}


def altered(raw_body: bytes) -> bytes:
    """The body as a framework that parsed and re-serialised it would hand it over (spaces added)."""
    return raw_body.replace(b'":', b'": ').replace(b",", b", ") if raw_body else b" "


def _matches(body: bytes, header: str, secret: str, tolerance_seconds: int, now: float) -> bool:
    try:
        verify(body, header, secret, tolerance_seconds, now)
    except WebhookVerificationError as error:
        return error.reason in ("timestamp_too_old", "timestamp_in_future", "body_not_json")
    return True


def judge(
    raw_body: bytes,
    header: str | None,
    secrets: list[ReceiverSecret],
    mode: CheckMode,
    now: float,
    tolerance_seconds: int = 300,
) -> Verdict:
    """Verify as a receiver would (in the chosen mode), then say why in the words of the inbox."""
    if not secrets:
        return Verdict(False, "no_secret", REASON_WORDS["no_secret"])
    checked_body = altered(raw_body) if mode is CheckMode.ALTERED_BODY else raw_body
    checked_secrets = [generate_secret()] if mode is CheckMode.WRONG_SECRET else [s.secret for s in secrets]
    matched = tuple(
        s.label for s in secrets if header and _matches(raw_body, header, s.secret, tolerance_seconds, now)
    )
    try:
        verify(checked_body, header, checked_secrets, tolerance_seconds, now)
    except WebhookVerificationError as error:
        if error.reason == "no_matching_signature":
            body_was_changed = checked_body != raw_body
            reason = "body_altered" if body_was_changed and matched else "wrong_secret"
            if reason == "wrong_secret" and matched:
                explanation = f"{REASON_WORDS[reason]} (it does match {', '.join(matched)})"
            else:
                explanation = REASON_WORDS[reason]
            return Verdict(False, reason, explanation, matched)
        if error.reason in ("timestamp_too_old", "timestamp_in_future"):
            return Verdict(
                False,
                "timestamp_outside_tolerance",
                f"{REASON_WORDS['timestamp_outside_tolerance']}: {error}",
                matched,
            )
        return Verdict(
            False, error.reason, f"{REASON_WORDS.get(error.reason, error.reason)}: {error}", matched
        )
    return Verdict(True, None, "verified with " + ", ".join(matched), matched)
