"""Which preferences a customer may save: mandatory events, threshold applicability, the body shape."""

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from aforo.api.problems import InvalidRequestError, invalid_request_from
from aforo.api.resources.notification_preferences.rules import (
    EventTypeFacts,
    PreferenceUpdate,
    custom_event_facts,
    ensure_allowed,
    preference_fields,
    preference_view,
    system_event_facts,
)
from aforo.dispatcher.preferences import PreferenceView as DispatcherPreferenceView
from aforo.shared.catalog import MANDATORY_EVENTS, SYSTEM_EVENTS

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def put(**overrides: Any) -> PreferenceUpdate:
    body: dict[str, Any] = {
        "eventType": "INVOICE_GENERATED",
        "enabled": True,
        "channels": ["EMAIL", "EMAIL", "SMS"],
    }
    body.update(overrides)
    return PreferenceUpdate.model_validate(body)


@pytest.mark.parametrize("event_type", sorted(MANDATORY_EVENTS))
@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"enabled": False}, "enabled"),
        ({"threshold": 1.0}, "threshold"),
        ({"cooldownMinutes": 10}, "cooldownMinutes"),
    ],
)
def test_mandatory_events_cannot_be_disabled_or_filtered(
    event_type: str, overrides: dict[str, Any], field: str
) -> None:
    facts = system_event_facts(event_type)
    assert facts is not None

    with pytest.raises(InvalidRequestError) as refused:
        ensure_allowed(put(eventType=event_type, **overrides), facts)

    assert (refused.value.code, refused.value.field) == ("mandatory_event", field)
    assert "mandatory" in refused.value.message
    assert event_type in refused.value.message


@pytest.mark.parametrize("event_type", sorted(MANDATORY_EVENTS))
def test_mandatory_events_may_choose_channels(event_type: str) -> None:
    facts = system_event_facts(event_type)
    assert facts is not None

    ensure_allowed(put(eventType=event_type, channels=["PAGERDUTY"], cooldownMinutes=0), facts)


@pytest.mark.parametrize("event_type", sorted(SYSTEM_EVENTS))
def test_a_threshold_needs_a_metric(event_type: str) -> None:
    facts = system_event_facts(event_type)
    assert facts is not None
    body = put(eventType=event_type, threshold=10.0)

    if facts.mandatory:
        return  # covered above: mandatory events take no threshold at all
    if facts.threshold_field is None:
        with pytest.raises(InvalidRequestError) as refused:
            ensure_allowed(body, facts)
        assert (refused.value.code, refused.value.field) == ("threshold_not_applicable", "threshold")
    else:
        ensure_allowed(body, facts)


def test_custom_events_take_a_threshold_only_with_a_threshold_field() -> None:
    with_field = custom_event_facts({"eventType": "METERED", "thresholdField": "usage.percent"})
    without = custom_event_facts({"eventType": "PLAIN", "thresholdField": None})

    ensure_allowed(put(eventType="METERED", threshold=80.0, enabled=False), with_field)
    with pytest.raises(InvalidRequestError):
        ensure_allowed(put(eventType="PLAIN", threshold=80.0), without)
    assert with_field == EventTypeFacts("METERED", False, "usage.percent")
    assert system_event_facts("METERED") is None


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"customerId": "someone-else"}, "customerId"),
        ({"enabled": "true"}, "enabled"),
        ({"enabled": None}, "enabled"),
        ({"channels": ["FAX"]}, "channels[0]"),
        ({"threshold": "100"}, "threshold"),
        ({"cooldownMinutes": 1.5}, "cooldownMinutes"),
        ({"cooldownMinutes": 525_601}, "cooldownMinutes"),
        ({"eventType": "bad type"}, "eventType"),
    ],
)
def test_body_errors_name_the_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as error:
        put(**overrides)

    assert invalid_request_from(error.value).field == field


def test_the_stored_row_is_what_the_dispatcher_reads() -> None:
    body = put(threshold=12.5, cooldownMinutes=30)
    document = {
        "tenantId": "t1",
        "customerId": "c1",
        "eventType": body.event_type,
        **preference_fields(body),
        "version": 3,
        "updatedAt": NOW,
    }

    seen = DispatcherPreferenceView.from_document(document)

    assert [channel.value for channel in sorted(seen.channels)] == ["EMAIL", "SMS"]
    assert (seen.enabled, str(seen.threshold), seen.cooldown_minutes) == (True, "12.5", 30)
    assert preference_view(document).to_wire() == {
        "eventType": "INVOICE_GENERATED",
        "enabled": True,
        "channels": ["EMAIL", "SMS"],
        "threshold": 12.5,
        "cooldownMinutes": 30,
        "mandatory": False,
        "version": 3,
        "updatedAt": "2026-11-23T09:00:00.000Z",
    }
