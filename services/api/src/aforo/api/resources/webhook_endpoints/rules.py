"""Which webhook endpoints may be registered, how their secrets rotate, and what a client sees of them.

A secret is encrypted before it is stored and never leaves the API again: responses, config changes
and logs carry the endpoint without its `secrets` (only when each secret was created and retires).
Rotation keeps the old secret signing next to the new one for `secret_rotation_overlap_seconds`, so
a receiver can switch at its own pace (the signature header then carries one `v1=` per secret).

URL policy at registration: `http`/`https`, an ASCII host (punycode for IDNs, as for embed origins),
no credentials, no fragment, no whitespace.
Literal private addresses are not refused here: the dispatcher's connector checks every address it
is about to connect to against its outbound allowlist (DNS names included, rebinding too), and a
second, weaker list here could only disagree with it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any, Final
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator

from aforo.api.event_subscribers import CustomerListQuery, SubscribedEvent, SubscriberUpdate
from aforo.api.problems import InvalidRequestError
from aforo.api.wire import (
    CustomerId,
    RequestBody,
    ResponseBody,
    Timestamp,
    unique_in_order,
)
from aforo.shared.webhook_endpoints import (
    DEFAULT_BACKOFF_MULTIPLIER,
    DEFAULT_INITIAL_BACKOFF_SECONDS,
    DEFAULT_MAX_RETRY_ATTEMPTS,
    SigningSecretEntry,
    WebhookEndpointDocument,
)

MAX_URL_LENGTH: Final = 2048
DISABLED_BY_ADMIN: Final = "disabled_by_admin"

WebhookSecret = Annotated[
    SecretStr,
    Field(min_length=16, max_length=512, description="The HMAC signing secret; never returned."),
]
MaxRetryAttempts = Annotated[int, Field(ge=1, le=10, description="Attempts in all, the first included.")]
InitialBackoffSeconds = Annotated[float, Field(ge=0, le=3600, allow_inf_nan=False)]
BackoffMultiplier = Annotated[float, Field(ge=1, le=10, allow_inf_nan=False)]


def check_webhook_url(url: str) -> str:
    """Raise ValueError (the reason, never the URL) unless `url` is a usable http(s) webhook URL."""
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"must be at most {MAX_URL_LENGTH} characters")
    if any(character.isspace() or ord(character) < 0x20 or ord(character) == 0x7F for character in url):
        raise ValueError("must not contain whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError("is not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError("must be an http or https URL")
    if "@" in parts.netloc:
        raise ValueError("must not carry credentials (user:password@); authenticate with the signature")
    if not parts.hostname:
        raise ValueError("must name a host")
    if not parts.hostname.isascii():
        # As for embed origins (aforo.shared.embed.normalise_origin): Python's IDNA 2003 codec would
        # map some names to other domains (faß.de → fass.de), so the integrator gives the A-label.
        raise ValueError("has a non-ASCII host name: give its punycode form (http://xn--...)")
    if port == 0:
        raise ValueError("must not use port 0")
    if parts.fragment or url.endswith("#"):
        raise ValueError("must not have a fragment (#...): it is never sent to the server")
    return url


class EndpointRegistration(RequestBody):
    """`POST /api/v1/webhook-endpoints`: a customer's webhook receiver."""

    end_customer_id: CustomerId = Field(alias="endCustomerId")
    url: str = Field(
        min_length=1,
        max_length=MAX_URL_LENGTH,
        pattern=r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s@#/?]+([/?][^\s#]*)?$",
        description="http(s), with a host, no credentials and no fragment.",
    )
    events: list[SubscribedEvent] = Field(min_length=1, max_length=200)
    secret: WebhookSecret
    max_retry_attempts: MaxRetryAttempts = Field(default=DEFAULT_MAX_RETRY_ATTEMPTS, alias="maxRetryAttempts")
    initial_backoff_seconds: InitialBackoffSeconds = Field(
        default=DEFAULT_INITIAL_BACKOFF_SECONDS, alias="initialBackoffSeconds"
    )
    backoff_multiplier: BackoffMultiplier = Field(
        default=DEFAULT_BACKOFF_MULTIPLIER, alias="backoffMultiplier"
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_webhook_url(value)

    @field_validator("events")
    @classmethod
    def _events(cls, value: list[str]) -> list[str]:
        return unique_in_order(value)


class EndpointUpdate(SubscriberUpdate):
    """`PATCH /api/v1/webhook-endpoints/{endpointId}`: absent fields stay; a `secret` is a rotation."""

    secret: WebhookSecret | None = None
    max_retry_attempts: MaxRetryAttempts | None = Field(default=None, alias="maxRetryAttempts")
    initial_backoff_seconds: InitialBackoffSeconds | None = Field(default=None, alias="initialBackoffSeconds")
    backoff_multiplier: BackoffMultiplier | None = Field(default=None, alias="backoffMultiplier")


class EndpointListQuery(CustomerListQuery):
    """`GET /api/v1/webhook-endpoints?endCustomerId=...`."""


class SigningSecretView(ResponseBody):
    """When a signing secret was set and when it stops signing (null: it is the current one)."""

    created_at: Timestamp = Field(alias="createdAt")
    retires_at: Timestamp | None = Field(alias="retiresAt")


class EndpointView(ResponseBody):
    """A webhook endpoint as clients see it: everything but the secrets themselves."""

    endpoint_id: str = Field(alias="endpointId")
    end_customer_id: str = Field(alias="endCustomerId")
    url: str
    events: list[str]
    active: bool
    max_retry_attempts: int = Field(alias="maxRetryAttempts")
    initial_backoff_seconds: float = Field(alias="initialBackoffSeconds")
    backoff_multiplier: float = Field(alias="backoffMultiplier")
    disabled_reason: str | None = Field(alias="disabledReason")
    signing_secrets: list[SigningSecretView] = Field(alias="signingSecrets")
    version: int
    created_at: Timestamp = Field(alias="createdAt")
    updated_at: Timestamp = Field(alias="updatedAt")


class EndpointList(ResponseBody):
    items: list[EndpointView]


def secret_entry(ciphertext: str, now: datetime) -> dict[str, Any]:
    return SigningSecretEntry(ciphertext=ciphertext, created_at=now).model_dump(by_alias=True)


def new_endpoint_document(
    tenant_id: str, body: EndpointRegistration, *, endpoint_id: str, ciphertext: str, now: datetime
) -> dict[str, Any]:
    """The `webhook_endpoints` document (`aforo.shared.webhook_endpoints`, what the dispatcher reads)."""
    return WebhookEndpointDocument(
        endpoint_id=endpoint_id,
        tenant_id=tenant_id,
        end_customer_id=body.end_customer_id,
        url=body.url,
        events=tuple(body.events),
        active=True,
        secrets=(SigningSecretEntry(ciphertext=ciphertext, created_at=now),),
        max_retry_attempts=body.max_retry_attempts,
        initial_backoff_seconds=float(body.initial_backoff_seconds),
        backoff_multiplier=float(body.backoff_multiplier),
        version=1,
        created_at=now,
        updated_at=now,
        disabled_reason=None,
    ).to_document()


def rotate_secrets(
    secrets: Sequence[Mapping[str, Any]], new_ciphertext: str, *, now: datetime, overlap: timedelta
) -> list[dict[str, Any]]:
    """The new secret first; the current ones retire at `now + overlap`; retired ones are dropped.

    A secret already retiring keeps its earlier date (a second rotation does not extend it), and one
    whose date has passed no longer signs, so it is not kept.
    """
    retires_at = now + overlap
    kept: list[dict[str, Any]] = [secret_entry(new_ciphertext, now)]
    for secret in secrets:
        current_retirement = secret.get("retiresAt")
        if current_retirement is None:
            kept.append({**secret, "retiresAt": retires_at})
        elif current_retirement > now:
            kept.append(dict(secret))
    return [entry for entry in kept if entry["retiresAt"] is None or entry["retiresAt"] > now]


def endpoint_changes(
    current: Mapping[str, Any],
    body: EndpointUpdate,
    *,
    new_ciphertext: str | None,
    now: datetime,
    overlap: timedelta,
) -> dict[str, Any]:
    """The stored fields a PATCH sets (without `version`/`updatedAt`); 422 when it sets none.

    Re-activating clears `disabledReason` (e.g. the dispatcher's `410 Gone`); deactivating records
    that an admin did it.
    """
    changes: dict[str, Any] = {}
    if body.active is not None:
        changes["active"] = body.active
        changes["disabledReason"] = None if body.active else DISABLED_BY_ADMIN
    if body.events is not None:
        changes["events"] = list(body.events)
    if body.max_retry_attempts is not None:
        changes["maxRetryAttempts"] = body.max_retry_attempts
    if body.initial_backoff_seconds is not None:
        changes["initialBackoffSeconds"] = float(body.initial_backoff_seconds)
    if body.backoff_multiplier is not None:
        changes["backoffMultiplier"] = float(body.backoff_multiplier)
    if new_ciphertext is not None:
        changes["secrets"] = rotate_secrets(
            current.get("secrets", []), new_ciphertext, now=now, overlap=overlap
        )
    if not changes:
        raise InvalidRequestError("validation_error", "the body names no field to change")
    return changes


def endpoint_view(document: Mapping[str, Any]) -> EndpointView:
    """What a client sees of a stored endpoint: everything but the secrets' ciphertexts."""
    stored = WebhookEndpointDocument.from_document(document)
    if stored.created_at is None or stored.updated_at is None:
        raise ValueError("createdAt/updatedAt: every endpoint the API stores has them")
    return EndpointView(
        endpoint_id=stored.endpoint_id,
        end_customer_id=stored.end_customer_id,
        url=stored.url,
        events=list(stored.events),
        active=stored.active,
        max_retry_attempts=stored.max_retry_attempts,
        initial_backoff_seconds=stored.initial_backoff_seconds,
        backoff_multiplier=stored.backoff_multiplier,
        disabled_reason=stored.disabled_reason,
        signing_secrets=[
            SigningSecretView(created_at=secret.created_at, retires_at=secret.retires_at)
            for secret in stored.secrets
        ],
        version=stored.version,
        created_at=stored.created_at,
        updated_at=stored.updated_at,
    )
