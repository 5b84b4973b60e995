"""Which notification preferences an end customer may save (the dispatcher applies them).

Rules, each a 422 naming the field:
- a mandatory event (PAYMENT_OVERDUE, WALLET_BALANCE_DEPLETED, SERVICE_DEGRADATION) cannot be
  disabled, and takes no threshold or cooldown: the dispatcher sends it whatever they say, so
  accepting them would promise a filter that never applies;
- a threshold needs a metric to compare: SYSTEM state changes (SUBSCRIPTION_ACTIVATED, ...) and
  CUSTOM events without a `thresholdField` refuse one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from pydantic import Field, StrictBool, field_validator

from aforo.api.problems import InvalidRequestError
from aforo.api.resources.event_definitions.rules import SYSTEM_THRESHOLD_FIELDS
from aforo.api.wire import EventTypeName, RequestBody, ResponseBody, Timestamp, WireChannel, unique_in_order
from aforo.shared.catalog import MANDATORY_EVENTS, SYSTEM_EVENTS
from aforo.shared.delivery import Channel

MAX_COOLDOWN_MINUTES: Final = 525_600  # a year


@dataclass(frozen=True)
class EventTypeFacts:
    """What the preference rules need to know about an event type."""

    event_type: str
    mandatory: bool
    threshold_field: str | None


def system_event_facts(event_type: str) -> EventTypeFacts | None:
    """Facts of a SYSTEM event; None for any other type."""
    event = SYSTEM_EVENTS.get(event_type)
    if event is None:
        return None
    return EventTypeFacts(event_type, event.mandatory, SYSTEM_THRESHOLD_FIELDS[event_type])


def custom_event_facts(definition: Mapping[str, Any]) -> EventTypeFacts:
    """Facts of a stored CUSTOM definition (never mandatory: the catalog decides that)."""
    return EventTypeFacts(str(definition["eventType"]), False, definition.get("thresholdField"))


class PreferenceUpdate(RequestBody):
    """`PUT /api/v1/notification-preferences`: one event type's preference for the calling customer."""

    event_type: EventTypeName = Field(alias="eventType")
    enabled: StrictBool
    channels: list[WireChannel] = Field(max_length=16)
    threshold: float | None = Field(
        default=None, allow_inf_nan=False, description="Only events whose metric passes it are sent."
    )
    cooldown_minutes: int | None = Field(default=None, alias="cooldownMinutes", ge=0, le=MAX_COOLDOWN_MINUTES)

    @field_validator("channels")
    @classmethod
    def _channels(cls, value: list[Channel]) -> list[Channel]:
        return unique_in_order(value)


class PreferenceView(ResponseBody):
    event_type: str = Field(alias="eventType")
    enabled: bool
    channels: list[Channel]
    threshold: float | None
    cooldown_minutes: int | None = Field(alias="cooldownMinutes")
    mandatory: bool
    version: int
    updated_at: Timestamp = Field(alias="updatedAt")


class PreferenceList(ResponseBody):
    items: list[PreferenceView]


def ensure_allowed(body: PreferenceUpdate, facts: EventTypeFacts) -> None:
    """The rules in the module docstring; 422 naming the field that breaks one."""
    if facts.mandatory:
        rule = f"{facts.event_type} is a mandatory event"
        if not body.enabled:
            raise InvalidRequestError("mandatory_event", f"{rule}: it cannot be disabled", "enabled")
        if body.threshold is not None:
            raise InvalidRequestError(
                "mandatory_event", f"{rule}: it is always sent, so takes no threshold", "threshold"
            )
        if body.cooldown_minutes:
            raise InvalidRequestError(
                "mandatory_event", f"{rule}: it is always sent, so takes no cooldown", "cooldownMinutes"
            )
    if body.threshold is not None and facts.threshold_field is None:
        raise InvalidRequestError(
            "threshold_not_applicable",
            f"{facts.event_type} has no metric to compare a threshold with",
            "threshold",
        )


def preference_fields(body: PreferenceUpdate) -> dict[str, Any]:
    """The stored fields a PUT sets (the whole preference; `version`/`updatedAt` come from the writer)."""
    return {
        "enabled": body.enabled,
        "channels": [channel.value for channel in body.channels],
        "threshold": body.threshold,
        "cooldownMinutes": body.cooldown_minutes,
    }


def preference_view(document: Mapping[str, Any]) -> PreferenceView:
    event_type = str(document["eventType"])
    threshold = document.get("threshold")
    return PreferenceView(
        event_type=event_type,
        enabled=bool(document.get("enabled", True)),
        channels=[Channel(channel) for channel in document.get("channels", [])],
        threshold=None if threshold is None else float(threshold),
        cooldown_minutes=document.get("cooldownMinutes"),
        mandatory=event_type in MANDATORY_EVENTS,
        version=int(document.get("version", 0)),
        updated_at=document["updatedAt"],
    )
