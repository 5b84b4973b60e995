"""What a tenant's event catalog holds and which CUSTOM definitions may be saved.

The catalog is every SYSTEM event (read-only, from `aforo.shared.catalog`) plus the tenant's CUSTOM
definitions (MongoDB `event_definitions`). A CUSTOM type may not take a SYSTEM name or the reserved
`webhook.test`; its trigger rule is checked by the trigger engine's own validator, so a rule the API
accepts is one the trigger agent compiles, and a refusal names the place inside the rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from pydantic import ConfigDict, Field, field_validator

from aforo.api.problems import ConflictError, InvalidRequestError
from aforo.api.wire import (
    DisplayName,
    EventTypeName,
    RequestBody,
    ResponseBody,
    Timestamp,
    WireCategory,
    WireChannel,
    WireSeverity,
    refuse_explicit_null,
    refuse_null,
    unique_in_order,
)
from aforo.shared.catalog import SYSTEM_EVENTS, WEBHOOK_TEST_EVENT
from aforo.shared.channels import NOTIFICATION_TEST_EVENT
from aforo.shared.delivery import SYSTEM_THRESHOLD_METRICS, Channel
from aforo.shared.envelope import EventCategory, Severity
from aforo.shared.rules import parse_field_path, validate_trigger_rule

SYSTEM_DEFAULT_CHANNELS: Final = (Channel.WEBHOOK,)
"""Where a SYSTEM event goes for a customer without a preference row (the dispatcher's default)."""

SYSTEM_THRESHOLD_FIELDS: Final[Mapping[str, str | None]] = {
    event_type: None if metric is None else metric.field_path
    for event_type, metric in SYSTEM_THRESHOLD_METRICS.items()
}
"""The payload field a preference threshold compares, per SYSTEM event; None for state changes."""

RESERVED_EVENT_TYPES: Final = frozenset(SYSTEM_EVENTS) | {WEBHOOK_TEST_EVENT, NOTIFICATION_TEST_EVENT}


class DefinitionSource(StrEnum):
    SYSTEM = "SYSTEM"
    CUSTOM = "CUSTOM"


class EventDefinitionCreate(RequestBody):
    """`POST /api/v1/admin/event-definitions`: a new CUSTOM event type."""

    event_type: EventTypeName = Field(alias="eventType")
    display_name: DisplayName = Field(alias="displayName")
    category: WireCategory
    severity: WireSeverity
    default_channels: list[WireChannel] = Field(alias="defaultChannels", max_length=16)
    trigger_rule: dict[str, Any] | None = Field(
        default=None,
        alias="triggerRule",
        description="Trigger rule (docs/trigger-rules.md); without one the event is emitted manually only.",
    )
    threshold_field: str | None = Field(
        default=None,
        alias="thresholdField",
        min_length=1,
        max_length=256,
        description="Payload path a customer's preference threshold compares (`usage.percent`, `lines[0].amount`).",
    )

    @field_validator("default_channels")
    @classmethod
    def _channels(cls, value: list[Channel]) -> list[Channel]:
        return unique_in_order(value)


_PATCH_NON_NULLABLE = ("displayName", "category", "severity", "defaultChannels")


class EventDefinitionUpdate(RequestBody):
    """`PATCH /api/v1/admin/event-definitions/{eventType}`: the fields to change.

    Absent fields stay as they are; `triggerRule: null` / `thresholdField: null` remove them.
    """

    model_config = ConfigDict(
        json_schema_extra=lambda schema: refuse_explicit_null(schema, _PATCH_NON_NULLABLE)
    )

    display_name: DisplayName | None = Field(default=None, alias="displayName")
    category: WireCategory | None = None
    severity: WireSeverity | None = None
    default_channels: list[WireChannel] | None = Field(default=None, alias="defaultChannels", max_length=16)
    trigger_rule: dict[str, Any] | None = Field(default=None, alias="triggerRule")
    threshold_field: str | None = Field(default=None, alias="thresholdField", min_length=1, max_length=256)

    @field_validator("display_name", "category", "severity", "default_channels", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        return refuse_null(value)

    @field_validator("default_channels")
    @classmethod
    def _channels(cls, value: list[Channel] | None) -> list[Channel] | None:
        return None if value is None else unique_in_order(value)


class EventDefinitionView(ResponseBody):
    """One row of the catalog: a SYSTEM event or one of the tenant's CUSTOM definitions."""

    event_type: str = Field(alias="eventType")
    display_name: str = Field(alias="displayName")
    category: EventCategory
    severity: Severity
    default_channels: list[Channel] = Field(alias="defaultChannels")
    trigger_rule: dict[str, Any] | None = Field(alias="triggerRule")
    threshold_field: str | None = Field(alias="thresholdField")
    mandatory: bool = Field(description="Mandatory events reach the customer whatever their preferences.")
    source: DefinitionSource
    version: int | None = Field(description="The CUSTOM definition's version; null for SYSTEM rows.")
    created_at: Timestamp | None = Field(alias="createdAt")
    updated_at: Timestamp | None = Field(alias="updatedAt")


class EventDefinitionList(ResponseBody):
    items: list[EventDefinitionView]


def display_name_of(event_type: str) -> str:
    """`INVOICE_GENERATED` → `Invoice generated`: SYSTEM events have no display name of their own."""
    return event_type.replace("_", " ").capitalize()


def system_definition_views() -> list[EventDefinitionView]:
    """Every SYSTEM event as a read-only catalog row, in catalog order."""
    return [
        EventDefinitionView(
            event_type=event.event_type,
            display_name=display_name_of(event.event_type),
            category=event.category,
            severity=event.severity,
            default_channels=list(SYSTEM_DEFAULT_CHANNELS),
            trigger_rule=None,
            threshold_field=SYSTEM_THRESHOLD_FIELDS[event.event_type],
            mandatory=event.mandatory,
            source=DefinitionSource.SYSTEM,
            version=None,
            created_at=None,
            updated_at=None,
        )
        for event in SYSTEM_EVENTS.values()
    ]


def custom_definition_view(document: Mapping[str, Any]) -> EventDefinitionView:
    """A stored CUSTOM definition as a catalog row."""
    return EventDefinitionView(
        event_type=document["eventType"],
        display_name=document["displayName"],
        category=EventCategory(document["category"]),
        severity=Severity(document["severity"]),
        default_channels=[Channel(channel) for channel in document.get("defaultChannels", [])],
        trigger_rule=document.get("triggerRule"),
        threshold_field=document.get("thresholdField"),
        mandatory=False,
        source=DefinitionSource.CUSTOM,
        version=int(document.get("version", 0)),
        created_at=document.get("createdAt"),
        updated_at=document.get("updatedAt"),
    )


def ensure_definable(event_type: str) -> None:
    """A CUSTOM type cannot take a SYSTEM name or `webhook.test`: 409, as for a type that exists."""
    if event_type in RESERVED_EVENT_TYPES:
        raise ConflictError("event_type_exists", "this is a SYSTEM or reserved event type", "eventType")


def ensure_custom(event_type: str) -> None:
    """SYSTEM rows (and `webhook.test`) are read-only: changing or deleting one is 409."""
    if event_type in RESERVED_EVENT_TYPES:
        raise ConflictError(
            "read_only_event_type",
            "this is a SYSTEM or reserved event type and cannot be changed",
            "eventType",
        )


def ensure_valid_rule(rule: dict[str, Any] | None) -> None:
    """The trigger engine's validation (SYSTEM `sourceEvents` only); 422 naming the path in the rule."""
    if rule is None:
        return
    problems = validate_trigger_rule(rule, system_event_types=SYSTEM_EVENTS.keys())
    if problems:
        path, message = problems[0]
        raise InvalidRequestError(
            "invalid_trigger_rule", message, f"triggerRule.{path}" if path else "triggerRule"
        )


def ensure_valid_threshold_field(path: str | None) -> None:
    """A `thresholdField` uses the trigger rules' path syntax; a bad one is refused when saved."""
    if path is None:
        return
    try:
        parse_field_path(path)
    except ValueError as error:
        raise InvalidRequestError("validation_error", str(error), "thresholdField") from None


def check_new_definition(body: EventDefinitionCreate) -> None:
    """409 for a reserved name, 422 for a bad rule or threshold field."""
    ensure_definable(body.event_type)
    ensure_valid_rule(body.trigger_rule)
    ensure_valid_threshold_field(body.threshold_field)


def new_definition_document(
    tenant_id: str, body: EventDefinitionCreate, *, version: int, now: datetime
) -> dict[str, Any]:
    """The `event_definitions` document for a new CUSTOM type (the shape the dispatcher reads)."""
    return {
        "tenantId": tenant_id,
        "eventType": body.event_type,
        "displayName": body.display_name,
        "category": body.category.value,
        "severity": body.severity.value,
        "defaultChannels": [channel.value for channel in body.default_channels],
        "triggerRule": body.trigger_rule,
        "thresholdField": body.threshold_field,
        "version": version,
        "createdAt": now,
        "updatedAt": now,
    }


def definition_changes(body: EventDefinitionUpdate) -> dict[str, Any]:
    """The stored fields a PATCH sets (without `version`/`updatedAt`); 422 when it sets none."""
    ensure_valid_rule(body.trigger_rule)
    ensure_valid_threshold_field(body.threshold_field)
    given = body.model_fields_set
    changes: dict[str, Any] = {}
    if "display_name" in given:
        changes["displayName"] = body.display_name
    if body.category is not None:
        changes["category"] = body.category.value
    if body.severity is not None:
        changes["severity"] = body.severity.value
    if body.default_channels is not None:
        changes["defaultChannels"] = [channel.value for channel in body.default_channels]
    if "trigger_rule" in given:
        changes["triggerRule"] = body.trigger_rule
    if "threshold_field" in given:
        changes["thresholdField"] = body.threshold_field
    if not changes:
        raise InvalidRequestError("validation_error", "the body names no field to change")
    return changes
