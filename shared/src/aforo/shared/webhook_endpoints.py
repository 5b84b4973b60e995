"""Webhook endpoints: the `webhook_endpoints` document the API writes and the dispatcher reads, and
the defaults both must agree on. One owner per stored entity (as `aforo.shared.embed`).

A document holds its signing secrets encrypted (`SecretBox`), newest first, each with when it was
created and when it retires (None: current); the API never returns them and the dispatcher decrypts
them to sign. Pure: no I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

ALL_EVENTS: Final = "*"
"""An endpoint subscribed to "*" receives every event type of its customer."""

DEFAULT_MAX_RETRY_ATTEMPTS: Final = 3
"""Attempts in all, the first included (t+0, t+2 s, t+6 s with the other two defaults)."""
DEFAULT_INITIAL_BACKOFF_SECONDS: Final = 2.0
DEFAULT_BACKOFF_MULTIPLIER: Final = 2.0


def _utc(value: datetime | None) -> datetime | None:
    """MongoDB returns naive datetimes unless the client is tz-aware: they are UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


class SigningSecretEntry(BaseModel):
    """One signing secret as stored: its ciphertext, when it was made, when it stops signing."""

    model_config = ConfigDict(populate_by_name=True, frozen=True, serialize_by_alias=True)

    ciphertext: str | None = Field(default=None, min_length=1)
    """Absent when read with a projection that leaves it out (the API's views never load it)."""
    created_at: datetime = Field(alias="createdAt")
    retires_at: datetime | None = Field(default=None, alias="retiresAt")

    @field_validator("created_at", "retires_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return _utc(value)

    def signs_at(self, moment: datetime) -> bool:
        return self.retires_at is None or self.retires_at > moment


class WebhookEndpointDocument(BaseModel):
    """A `webhook_endpoints` document (camelCase on disk), as the API writes and the dispatcher reads it."""

    model_config = ConfigDict(populate_by_name=True, frozen=True, extra="ignore", serialize_by_alias=True)

    # Strict where a stored value of the wrong type means a bug elsewhere: never coerce it silently.
    endpoint_id: str = Field(alias="endpointId", min_length=1, strict=True)
    tenant_id: str = Field(alias="tenantId", min_length=1, strict=True)
    end_customer_id: str = Field(alias="endCustomerId", min_length=1, strict=True)
    url: str = Field(min_length=1, strict=True)
    events: tuple[Annotated[str, Field(strict=True)], ...] = ()
    active: bool = Field(default=True, strict=True)
    secrets: tuple[SigningSecretEntry, ...] = ()
    max_retry_attempts: int = Field(
        default=DEFAULT_MAX_RETRY_ATTEMPTS, alias="maxRetryAttempts", ge=1, strict=True
    )
    initial_backoff_seconds: float = Field(
        default=DEFAULT_INITIAL_BACKOFF_SECONDS,
        alias="initialBackoffSeconds",
        ge=0,
        allow_inf_nan=False,
        strict=True,
    )
    backoff_multiplier: float = Field(
        default=DEFAULT_BACKOFF_MULTIPLIER, alias="backoffMultiplier", gt=0, allow_inf_nan=False, strict=True
    )
    version: int = 1
    # Always written by the API; optional only for reading documents made by hand (tests, fixes).
    created_at: datetime | None = Field(default=None, alias="createdAt")
    updated_at: datetime | None = Field(default=None, alias="updatedAt")
    disabled_reason: str | None = Field(default=None, alias="disabledReason")

    @field_validator("created_at", "updated_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return _utc(value)

    @field_validator("events", mode="before")
    @classmethod
    def _a_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError("expected a list of event types")  # a str is a sequence: refuse it here
        return tuple(value) if isinstance(value, list) else value

    def subscribes_to(self, event_type: str) -> bool:
        return event_type in self.events or ALL_EVENTS in self.events

    def to_document(self) -> dict[str, Any]:
        """The stored document: camelCase, lists (not tuples), datetimes as BSON dates."""
        document = self.model_dump(by_alias=True)
        document["events"] = list(self.events)
        document["secrets"] = [secret.model_dump(by_alias=True) for secret in self.secrets]
        return document

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> WebhookEndpointDocument:
        """Read a stored document (MongoDB's `_id` ignored); ValueError `<field>: <problem>` if it is bad."""
        try:
            return cls.model_validate(document)
        except ValidationError as error:
            first = error.errors(include_input=False, include_url=False)[0]
            field = str(first["loc"][0]) if first["loc"] else "document"
            raise ValueError(f"{field}: {first['msg']}") from None
