"""Channel providers and contact destinations: the documents the API writes and the dispatcher reads,
and the address rules both sides must apply the same way.

- A **channel provider** is a tenant's account at an EMAIL (SMTP), SMS (the Twilio Messages API) or
  PAGERDUTY (Events API v2) provider: one per (tenant, channel), with its retry policy and
  `mode` (`live` sends, `test` renders and logs only). Secrets (SMTP password, SMS auth token) are
  stored only as `SecretBox` ciphertext plus their last four characters for display.
- A **contact destination** is where one end customer is reached on one channel: an e-mail address,
  an E.164 phone number or a PagerDuty routing key (a secret: ciphertext only). Its `addressKey` is
  what the unique index compares, so one customer cannot register the same address twice per channel.

Pure: no I/O here, so the API's and the dispatcher's tests need no broker or database for these rules.
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
from datetime import datetime
from enum import StrEnum
from typing import Any, Final, Literal, Self

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, ConfigDict, Field, model_validator

from aforo.shared.delivery import Channel

# A provider's retry defaults are a webhook endpoint's (one owner: aforo.shared.webhook_endpoints).
from aforo.shared.webhook_endpoints import (
    DEFAULT_BACKOFF_MULTIPLIER,
    DEFAULT_INITIAL_BACKOFF_SECONDS,
    DEFAULT_MAX_RETRY_ATTEMPTS,
)

DEFAULT_PAGERDUTY_EVENTS_URL: Final = "https://events.pagerduty.com/v2/enqueue"
PAGERDUTY_ROUTING_KEY_LENGTH: Final = 32
NOTIFICATION_TEST_EVENT: Final = "notification.test"
"""The reserved probe type sent by `POST /api/v1/contact-destinations/{id}/test`."""

PROVIDER_CHANNELS: Final = frozenset({Channel.EMAIL, Channel.SMS, Channel.PAGERDUTY})
"""The channels with a provider and destinations; WEBHOOK has endpoints instead."""

SECRET_HINT_LENGTH: Final = 4


class ProviderMode(StrEnum):
    LIVE = "live"
    """Send through the provider."""
    TEST = "test"
    """Render and log, send nothing: the row is DELIVERED with `test mode` noted."""


class EmailSecurity(StrEnum):
    STARTTLS = "starttls"
    """Plain connect, then STARTTLS, required: a server that does not offer it is refused."""
    TLS = "tls"
    """Implicit TLS from the first byte (port 465)."""
    NONE = "none"
    """No TLS at all: only for a host the outbound allowlist admits (local development)."""


def secret_hint(secret: str) -> str:
    """What may be shown of a secret: at most its last four characters, only when it is long enough
    that four characters give away less than a quarter of it."""
    if len(secret) < SECRET_HINT_LENGTH * 4:
        return ""
    return secret[-SECRET_HINT_LENGTH:]


# --------------------------------------------------------------------------- addresses


class AddressError(ValueError):
    """An address that cannot be used on its channel; the message says why, never echoes it."""


def normalise_email(address: str) -> str:
    """A syntactically valid address in email-validator's normalised form (no DNS lookup: a save must
    not depend on the resolver, and a domain may gain its MX record after it)."""
    try:
        return validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError as error:
        raise AddressError(f"is not a valid e-mail address: {error}") from None


def normalise_phone(number: str) -> str:
    """An E.164 number (`+447911123123`); the number must carry its `+country` prefix."""
    if not number.startswith("+"):
        raise AddressError("must be an E.164 phone number with its country code (+447911123123)")
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        raise AddressError("is not a phone number") from None
    if not phonenumbers.is_valid_number(parsed):
        raise AddressError("is not a valid phone number for its country code")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def check_routing_key(key: str) -> str:
    """A PagerDuty integration (routing) key: exactly 32 letters and digits."""
    if len(key) != PAGERDUTY_ROUTING_KEY_LENGTH or not key.isascii() or not key.isalnum():
        raise AddressError(
            f"must be a PagerDuty routing key: {PAGERDUTY_ROUTING_KEY_LENGTH} letters and digits"
        )
    return key


def normalise_address(channel: Channel, address: str) -> str:
    """The address as stored and sent, or AddressError naming the rule it breaks."""
    if channel is Channel.EMAIL:
        return normalise_email(address)
    if channel is Channel.SMS:
        return normalise_phone(address)
    if channel is Channel.PAGERDUTY:
        return check_routing_key(address)
    raise AddressError(f"{channel.value} has endpoints, not contact destinations")


def address_key(tenant_id: str, customer_id: str, channel: Channel, normalised: str) -> str:
    """What the unique index compares: the address itself, case-folded for e-mail, and for a routing
    key (a secret) its SHA-256 instead. Routing keys are 128 random bits, so the hash cannot be
    reversed by guessing; scoping it to (tenant, customer) keeps equal keys of two tenants apart."""
    if channel is Channel.PAGERDUTY:
        digest = hashlib.sha256(f"{tenant_id}\x00{customer_id}\x00{normalised}".encode()).hexdigest()
        return f"sha256:{digest}"
    if channel is Channel.EMAIL:
        return normalised.casefold()
    return normalised


def mask_address(channel: Channel, normalised: str) -> str:
    """The form shown in lists and the audit trail: `j***@acme.com`, `+4479*****123`, `****abcd`."""
    if channel is Channel.EMAIL:
        local, _, domain = normalised.rpartition("@")
        return f"{local[:1]}***@{domain}"
    if channel is Channel.SMS:
        hidden = max(0, len(normalised) - 8)
        return f"{normalised[:5]}{'*' * hidden}{normalised[5 + hidden :]}"
    return f"****{normalised[-SECRET_HINT_LENGTH:]}"


def new_destination_id() -> str:
    return f"cd_{secrets.token_hex(12)}"


# --------------------------------------------------------------------------- plaintext SMTP


def plaintext_host_admitted(host: str, allowlist: str) -> bool:
    """Whether `security: none` may be used for `host`: only an IP literal inside the operator's
    outbound allowlist (comma-separated CIDRs), or `localhost` when the allowlist admits loopback.
    A DNS name is refused here because its answer can change; the dispatcher checks again on the
    addresses it actually connects to."""
    networks = []
    for entry in allowlist.split(","):
        text = entry.strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            continue
    if host.lower() == "localhost":
        candidates = [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    else:
        try:
            candidates = [ipaddress.ip_address(host.strip("[]"))]
        except ValueError:
            return False
    return any(candidate in network for candidate in candidates for network in networks)


# --------------------------------------------------------------------------- documents


class _Document(BaseModel):
    """A MongoDB document of these collections: camelCase fields, unknown fields ignored (`_id`)."""

    model_config = ConfigDict(populate_by_name=True, frozen=True, extra="ignore", serialize_by_alias=True)

    def to_document(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, mode="python")


class EmailProviderConfig(_Document):
    host: str
    port: int
    security: EmailSecurity
    username: str | None = None
    password_ciphertext: str | None = Field(default=None, alias="passwordCiphertext", repr=False)
    password_hint: str | None = Field(default=None, alias="passwordHint")
    from_address: str = Field(alias="fromAddress")
    reply_to: str | None = Field(default=None, alias="replyTo")


class SmsProviderConfig(_Document):
    base_url: str = Field(alias="baseUrl")
    account_sid: str = Field(alias="accountSid")
    auth_token_ciphertext: str = Field(alias="authTokenCiphertext", repr=False)
    auth_token_hint: str | None = Field(default=None, alias="authTokenHint")
    from_number: str | None = Field(default=None, alias="fromNumber")
    messaging_service_sid: str | None = Field(default=None, alias="messagingServiceSid")


class PagerDutyProviderConfig(_Document):
    events_url: str = Field(default=DEFAULT_PAGERDUTY_EVENTS_URL, alias="eventsUrl")


ProviderConfig = EmailProviderConfig | SmsProviderConfig | PagerDutyProviderConfig
CONFIG_FIELD: Final[dict[Channel, Literal["email", "sms", "pagerduty"]]] = {
    Channel.EMAIL: "email",
    Channel.SMS: "sms",
    Channel.PAGERDUTY: "pagerduty",
}
SECRET_FIELDS: Final = frozenset({"passwordCiphertext", "authTokenCiphertext", "addressCiphertext"})
"""Ciphertexts stay in MongoDB: never in a response, a config change or a log line."""


class ChannelProviderDocument(_Document):
    """`channel_providers`: one per (tenant, channel); exactly the channel's own config is set."""

    tenant_id: str = Field(alias="tenantId")
    channel: Channel
    mode: ProviderMode = ProviderMode.LIVE
    max_retry_attempts: int = Field(default=DEFAULT_MAX_RETRY_ATTEMPTS, alias="maxRetryAttempts")
    initial_backoff_seconds: float = Field(
        default=DEFAULT_INITIAL_BACKOFF_SECONDS, alias="initialBackoffSeconds"
    )
    backoff_multiplier: float = Field(default=DEFAULT_BACKOFF_MULTIPLIER, alias="backoffMultiplier")
    email: EmailProviderConfig | None = None
    sms: SmsProviderConfig | None = None
    pagerduty: PagerDutyProviderConfig | None = None
    version: int = 1
    created_at: datetime = Field(alias="createdAt")
    updated_at: datetime = Field(alias="updatedAt")

    @model_validator(mode="after")
    def _one_config(self) -> Self:
        if self.channel not in PROVIDER_CHANNELS:
            raise ValueError(f"channel: {self.channel.value} has no provider")
        present = {name for name in ("email", "sms", "pagerduty") if getattr(self, name) is not None}
        if present != {CONFIG_FIELD[self.channel]}:
            raise ValueError(f"{CONFIG_FIELD[self.channel]}: a {self.channel.value} provider has only it")
        return self

    @property
    def config(self) -> ProviderConfig:
        config: ProviderConfig | None = getattr(self, CONFIG_FIELD[self.channel])
        assert config is not None  # checked by _one_config
        return config


class ContactDestinationDocument(_Document):
    """`contact_destinations`: one per (tenant, customer, channel, address).

    `address` is the plaintext for EMAIL and SMS (the dispatcher sends to it) and null for PAGERDUTY,
    whose routing key is only `addressCiphertext`. `maskedAddress` is what every view shows.
    """

    tenant_id: str = Field(alias="tenantId")
    destination_id: str = Field(alias="destinationId")
    end_customer_id: str = Field(alias="endCustomerId")
    channel: Channel
    address: str | None = None
    address_ciphertext: str | None = Field(default=None, alias="addressCiphertext", repr=False)
    address_key: str = Field(alias="addressKey")
    masked_address: str = Field(alias="maskedAddress")
    events: list[str] = Field(default_factory=lambda: ["*"])
    active: bool = True
    label: str | None = None
    version: int = 1
    created_at: datetime = Field(alias="createdAt")
    updated_at: datetime = Field(alias="updatedAt")

    @model_validator(mode="after")
    def _address_stored_once(self) -> Self:
        if self.channel is Channel.PAGERDUTY:
            if self.address is not None or not self.address_ciphertext:
                raise ValueError("addressCiphertext: a routing key is stored encrypted only")
        elif not self.address or self.address_ciphertext is not None:
            raise ValueError("address: an e-mail address or phone number is stored as plaintext")
        return self

    def subscribed_to(self, event_type: str) -> bool:
        return "*" in self.events or event_type in self.events


class TemplateOverrideDocument(_Document):
    """`channel_templates`: a tenant's template for one (event type, channel); absent parts fall back
    to the built-in template's parts."""

    tenant_id: str = Field(alias="tenantId")
    event_type: str = Field(alias="eventType")
    channel: Channel
    subject: str | None = None
    text: str | None = None
    html: str | None = None
    version: int = 1
    created_at: datetime = Field(alias="createdAt")
    updated_at: datetime = Field(alias="updatedAt")


def public_document(document: dict[str, Any]) -> dict[str, Any]:
    """A stored provider or destination without its ciphertexts (nested ones included) or `_id`."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: strip(item) for key, item in value.items() if key not in SECRET_FIELDS}
        return value

    return {key: strip(value) for key, value in document.items() if key != "_id" and key not in SECRET_FIELDS}
