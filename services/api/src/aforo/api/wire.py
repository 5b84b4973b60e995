"""Wire building blocks every API body shares: strict models, channels, timestamps, event type names.

Bodies are validated strictly (a JSON `"true"` is not a boolean, `"3"` is not a number); enums accept
their wire spelling. Timestamps leave the API as ISO-8601 UTC with milliseconds and a `Z`, like the
envelope's `occurredAt`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Final, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    Strict,
    field_validator,
)

from aforo.shared.delivery import Channel
from aforo.shared.envelope import EventCategory, Severity, format_utc
from aforo.shared.request_json import check_display_text, check_identifier_text

EVENT_TYPE_PATTERN: Final = r"^[A-Za-z][A-Za-z0-9_.\-]{0,127}$"
"""Event type names: a letter, then letters, digits, `_`, `.`, `-`; at most 128 (the envelope's limit).
No `:` (it separates the parts of Kafka keys and config-change ids) and no `/` (it is a path segment)."""

EventTypeName = Annotated[str, Field(pattern=EVENT_TYPE_PATTERN, min_length=1, max_length=128)]
Identifier = Annotated[str, Field(min_length=1), AfterValidator(check_identifier_text)]
"""An id a client names (a customer, an event): no control or format characters (NUL, U+202E, U+200B)."""
CustomerId = Annotated[Identifier, Field(max_length=128)]
DisplayName = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(check_display_text)]
"""A name people read (an event definition's `displayName`): no control characters, no bidi overrides."""
WireChannel = Annotated[Channel, Strict(False)]
WireCategory = Annotated[EventCategory, Strict(False)]
WireSeverity = Annotated[Severity, Strict(False)]
Timestamp = Annotated[datetime, PlainSerializer(format_utc, return_type=str, when_used="always")]


class RequestBody(BaseModel):
    """A request body or query: strict types, unknown fields refused, camelCase names on the wire."""

    model_config = ConfigDict(strict=True, extra="forbid", populate_by_name=True, frozen=True)


def refuse_null(value: Any) -> Any:
    """A PATCH field may be left out (keep the stored value) but never sent as `null`."""
    if value is None:
        raise ValueError("must not be null (leave the field out to keep it)")
    return value


class PartialUpdate(RequestBody):
    """A PATCH body: every field optional, none of them `null` (and its JSON schema says so)."""

    model_config = ConfigDict(
        json_schema_extra=lambda schema: refuse_explicit_null(schema, tuple(schema.get("properties", {})))
    )

    @field_validator("*", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        return refuse_null(value)


class QueryParameters(RequestBody):
    """A query string: values arrive as text, so numbers are parsed; unknown parameters are ignored."""

    model_config = ConfigDict(strict=False, extra="ignore")


EARLIEST_QUERY_TIME: Final = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_QUERY_TIME: Final = datetime(9999, 12, 30, tzinfo=UTC)
"""Query times outside these are refused (422): nothing was logged before 1970, and the margin
below `datetime.max` leaves room for the window arithmetic (a millisecond, a day) without overflow."""


def parse_query_time(value: Any) -> datetime:
    """ISO-8601 with an offset or `Z`; a time without a zone is ambiguous, so refused."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        text = value.strip()
        try:
            moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
        except ValueError:
            raise ValueError("expected an ISO-8601 timestamp, e.g. 2026-01-31T09:00:00Z") from None
    else:
        raise ValueError("expected an ISO-8601 timestamp")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("the timestamp needs a timezone (an offset or Z)")
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+14:00 is before the first representable instant
        moment = datetime.min.replace(tzinfo=UTC)
    if not EARLIEST_QUERY_TIME <= moment <= LATEST_QUERY_TIME:
        raise ValueError("the timestamp must be between 1970-01-01T00:00:00Z and 9999-12-30T00:00:00Z")
    return moment


QueryTime = Annotated[datetime, BeforeValidator(parse_query_time)]


class ResponseBody(BaseModel):
    """A response: camelCase on the wire, built from trusted data."""

    model_config = ConfigDict(populate_by_name=True, frozen=True, serialize_by_alias=True)

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


T = TypeVar("T")


def unique_in_order(values: list[T]) -> list[T]:
    """Duplicates dropped, first occurrence kept: `["EMAIL", "EMAIL"]` means `["EMAIL"]`."""
    return list(dict.fromkeys(values))


def refuse_explicit_null(schema: dict[str, Any], fields: tuple[str, ...]) -> None:
    """JSON-schema fixer for PATCH bodies: these optional fields may be absent but never `null`."""
    properties = schema.get("properties", {})
    for name in fields:
        prop = properties.get(name)
        if prop is None or "anyOf" not in prop:
            continue
        options = [option for option in prop.pop("anyOf") if option.get("type") != "null"]
        prop.pop("default", None)
        if len(options) == 1:
            prop.update(options[0])
        else:
            prop["anyOf"] = options
