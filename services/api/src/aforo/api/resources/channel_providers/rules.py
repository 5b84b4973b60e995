"""Which EMAIL, SMS and PAGERDUTY provider settings a tenant may save, and what a client sees of them.

One provider per (tenant, channel), replaced whole by each PUT. Secrets (the SMTP password, the SMS
auth token) are write-only: encrypted with the `SecretBox` before they are stored, shown only as
their last four characters; a PUT that leaves one out keeps the stored one, so an admin can change a
port without re-entering a password. Plaintext SMTP (`security: none`) is accepted only for a host
the operator's outbound allowlist admits (local development). See docs/channels.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Annotated, Any, Final, Self

from pydantic import Field, RootModel, SecretStr, Strict, ValidationError, field_validator, model_validator

from aforo.api.problems import InvalidRequestError, NotFoundError, invalid_request_from
from aforo.api.resources.webhook_endpoints.rules import (
    BackoffMultiplier,
    InitialBackoffSeconds,
    MaxRetryAttempts,
    check_webhook_url,
)
from aforo.api.wire import RequestBody, ResponseBody, Timestamp
from aforo.shared.channels import (
    DEFAULT_PAGERDUTY_EVENTS_URL,
    PROVIDER_CHANNELS,
    ChannelProviderDocument,
    EmailSecurity,
    ProviderMode,
    normalise_email,
    normalise_phone,
    plaintext_host_admitted,
    secret_hint,
)
from aforo.shared.delivery import Channel
from aforo.shared.webhook_endpoints import (
    DEFAULT_BACKOFF_MULTIPLIER,
    DEFAULT_INITIAL_BACKOFF_SECONDS,
    DEFAULT_MAX_RETRY_ATTEMPTS,
)

MAX_HOST_LENGTH: Final = 253
WireSecurity = Annotated[EmailSecurity, Strict(False)]
WireMode = Annotated[ProviderMode, Strict(False)]
ProviderSecret = Annotated[SecretStr, Field(min_length=1, max_length=512, description="Write-only.")]
HttpUrl = Annotated[str, Field(min_length=1, max_length=2048, pattern=r"^[Hh][Tt][Tt][Pp][Ss]?://")]
AccountSid = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9]+$")]


def provider_channel(value: str) -> Channel:
    """The `{channel}` path segment: EMAIL, SMS or PAGERDUTY; anything else is no provider (404)."""
    try:
        channel = Channel(value)
    except ValueError:
        channel = None
    if channel not in PROVIDER_CHANNELS:
        raise NotFoundError(
            "channel_not_found", "channel providers exist for EMAIL, SMS and PAGERDUTY", "channel"
        )
    assert channel is not None
    return channel


class _ProviderBody(RequestBody):
    mode: WireMode = ProviderMode.LIVE
    max_retry_attempts: MaxRetryAttempts = Field(default=DEFAULT_MAX_RETRY_ATTEMPTS, alias="maxRetryAttempts")
    initial_backoff_seconds: InitialBackoffSeconds = Field(
        default=DEFAULT_INITIAL_BACKOFF_SECONDS, alias="initialBackoffSeconds"
    )
    backoff_multiplier: BackoffMultiplier = Field(
        default=DEFAULT_BACKOFF_MULTIPLIER, alias="backoffMultiplier"
    )


class EmailProviderBody(_ProviderBody):
    """`PUT /api/v1/admin/channel-providers/EMAIL`: an SMTP server."""

    host: str = Field(min_length=1, max_length=MAX_HOST_LENGTH, pattern=r"^[A-Za-z0-9.\-:\[\]]+$")
    port: int = Field(ge=1, le=65535)
    security: WireSecurity = Field(
        description="starttls (required, not opportunistic), tls (implicit) or none (allowlisted hosts only)."
    )
    username: str | None = Field(default=None, min_length=1, max_length=256)
    password: ProviderSecret | None = None
    from_address: str = Field(alias="fromAddress", min_length=3, max_length=320)
    reply_to: str | None = Field(default=None, alias="replyTo", min_length=3, max_length=320)

    @field_validator("from_address", "reply_to")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        return None if value is None else normalise_email(value)


class SmsProviderBody(_ProviderBody):
    """`PUT /api/v1/admin/channel-providers/SMS`: an account at the Twilio Messages API (or a gateway
    that speaks it); exactly one of `fromNumber` and `messagingServiceSid`."""

    base_url: HttpUrl = Field(alias="baseUrl")
    account_sid: AccountSid = Field(alias="accountSid")
    auth_token: ProviderSecret | None = Field(default=None, alias="authToken")
    from_number: str | None = Field(default=None, alias="fromNumber", min_length=2, max_length=20)
    messaging_service_sid: AccountSid | None = Field(default=None, alias="messagingServiceSid")

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        return check_webhook_url(value).rstrip("/")

    @field_validator("from_number")
    @classmethod
    def _from_number(cls, value: str | None) -> str | None:
        return None if value is None else normalise_phone(value)

    @model_validator(mode="after")
    def _one_sender(self) -> Self:
        if (self.from_number is None) == (self.messaging_service_sid is None):
            raise ValueError("give exactly one of fromNumber and messagingServiceSid")
        return self


class PagerDutyProviderBody(_ProviderBody):
    """`PUT /api/v1/admin/channel-providers/PAGERDUTY`: the Events API v2 URL (the US host by default;
    `https://events.eu.pagerduty.com/v2/enqueue` for the EU service region)."""

    events_url: HttpUrl = Field(default=DEFAULT_PAGERDUTY_EVENTS_URL, alias="eventsUrl")

    @field_validator("events_url")
    @classmethod
    def _events_url(cls, value: str) -> str:
        return check_webhook_url(value)


BODY_MODELS: Final[Mapping[Channel, type[_ProviderBody]]] = {
    Channel.EMAIL: EmailProviderBody,
    Channel.SMS: SmsProviderBody,
    Channel.PAGERDUTY: PagerDutyProviderBody,
}


class ChannelProviderBody(RootModel[EmailProviderBody | SmsProviderBody | PagerDutyProviderBody]):
    """The PUT body, by the path's channel (documentation only: the route validates the channel's model)."""


class EmailProviderView(ResponseBody):
    host: str
    port: int
    security: EmailSecurity
    username: str | None
    password_set: bool = Field(alias="passwordSet")
    password_hint: str | None = Field(alias="passwordHint", description="At most the last 4 characters.")
    from_address: str = Field(alias="fromAddress")
    reply_to: str | None = Field(alias="replyTo")


class SmsProviderView(ResponseBody):
    base_url: str = Field(alias="baseUrl")
    account_sid: str = Field(alias="accountSid")
    auth_token_hint: str | None = Field(alias="authTokenHint", description="At most the last 4 characters.")
    from_number: str | None = Field(alias="fromNumber")
    messaging_service_sid: str | None = Field(alias="messagingServiceSid")


class PagerDutyProviderView(ResponseBody):
    events_url: str = Field(alias="eventsUrl")


class ChannelProviderView(ResponseBody):
    """A provider as admins see it: everything but its secrets."""

    channel: Channel
    mode: ProviderMode
    max_retry_attempts: int = Field(alias="maxRetryAttempts")
    initial_backoff_seconds: float = Field(alias="initialBackoffSeconds")
    backoff_multiplier: float = Field(alias="backoffMultiplier")
    email: EmailProviderView | None = None
    sms: SmsProviderView | None = None
    pagerduty: PagerDutyProviderView | None = None
    version: int
    created_at: Timestamp = Field(alias="createdAt")
    updated_at: Timestamp = Field(alias="updatedAt")


class ChannelProviderList(ResponseBody):
    items: list[ChannelProviderView]


def parse_provider_body(channel: Channel, raw: object) -> _ProviderBody:
    """The body validated by the path's channel's model (422 naming the field)."""
    if not isinstance(raw, dict):
        raise InvalidRequestError("validation_error", "the request body must be a JSON object")
    try:
        return BODY_MODELS[channel].model_validate(raw)
    except ValidationError as error:
        raise invalid_request_from(error) from None


def provider_document(
    tenant_id: str,
    channel: Channel,
    body: _ProviderBody,
    *,
    current: Mapping[str, Any] | None,
    encrypt: Callable[[str], str],
    outbound_allowlist: str,
    version: int,
    now: datetime,
) -> dict[str, Any]:
    """The stored `channel_providers` document a PUT makes; 422 naming the field it cannot accept.

    `encrypt` is the SecretBox's `encrypt`; a secret left out of the body keeps `current`'s ciphertext.
    """
    kept: Mapping[str, Any] = (current or {}).get(channel.value.lower()) or {}
    config: dict[str, Any]
    if isinstance(body, EmailProviderBody):
        if body.security is EmailSecurity.NONE and not plaintext_host_admitted(body.host, outbound_allowlist):
            raise InvalidRequestError(
                "validation_error",
                "plaintext SMTP is accepted only for a host in the outbound allowlist (local development); "
                "use starttls or tls",
                "security",
            )
        password = body.password.get_secret_value() if body.password is not None else None
        config = {
            "host": body.host,
            "port": body.port,
            "security": body.security.value,
            "username": body.username,
            "passwordCiphertext": encrypt(password) if password else kept.get("passwordCiphertext"),
            "passwordHint": secret_hint(password) if password else kept.get("passwordHint"),
            "fromAddress": body.from_address,
            "replyTo": body.reply_to,
        }
    elif isinstance(body, SmsProviderBody):
        token = body.auth_token.get_secret_value() if body.auth_token is not None else None
        if token is None and not kept.get("authTokenCiphertext"):
            raise InvalidRequestError("validation_error", "field required", "authToken")
        config = {
            "baseUrl": body.base_url,
            "accountSid": body.account_sid,
            "authTokenCiphertext": encrypt(token) if token else kept["authTokenCiphertext"],
            "authTokenHint": secret_hint(token) if token else kept.get("authTokenHint"),
            "fromNumber": body.from_number,
            "messagingServiceSid": body.messaging_service_sid,
        }
    else:
        assert isinstance(body, PagerDutyProviderBody)
        config = {"eventsUrl": body.events_url}
    document = {
        "tenantId": tenant_id,
        "channel": channel.value,
        "mode": body.mode.value,
        "maxRetryAttempts": body.max_retry_attempts,
        "initialBackoffSeconds": float(body.initial_backoff_seconds),
        "backoffMultiplier": float(body.backoff_multiplier),
        channel.value.lower(): config,
        "version": version,
        "createdAt": (current or {}).get("createdAt", now),
        "updatedAt": now,
    }
    ChannelProviderDocument.model_validate(document)  # the shape the dispatcher reads
    return document


def provider_view(document: Mapping[str, Any]) -> ChannelProviderView:
    provider = ChannelProviderDocument.model_validate(document)
    email = sms = pagerduty = None
    if provider.email is not None:
        email = EmailProviderView(
            host=provider.email.host,
            port=provider.email.port,
            security=provider.email.security,
            username=provider.email.username,
            password_set=bool(document.get("email", {}).get("passwordCiphertext"))
            or provider.email.password_hint is not None,
            password_hint=provider.email.password_hint or None,
            from_address=provider.email.from_address,
            reply_to=provider.email.reply_to,
        )
    if provider.sms is not None:
        sms = SmsProviderView(
            base_url=provider.sms.base_url,
            account_sid=provider.sms.account_sid,
            auth_token_hint=provider.sms.auth_token_hint or None,
            from_number=provider.sms.from_number,
            messaging_service_sid=provider.sms.messaging_service_sid,
        )
    if provider.pagerduty is not None:
        pagerduty = PagerDutyProviderView(events_url=provider.pagerduty.events_url)
    return ChannelProviderView(
        channel=provider.channel,
        mode=provider.mode,
        max_retry_attempts=provider.max_retry_attempts,
        initial_backoff_seconds=provider.initial_backoff_seconds,
        backoff_multiplier=provider.backoff_multiplier,
        email=email,
        sms=sms,
        pagerduty=pagerduty,
        version=provider.version,
        created_at=provider.created_at,
        updated_at=provider.updated_at,
    )
