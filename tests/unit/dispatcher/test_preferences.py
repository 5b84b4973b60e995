"""Preference gates: enabled, channels, threshold, cooldown; mandatory events and the test probe."""

import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aforo.dispatcher.preferences import (
    COOLDOWN_COLLECTION,
    SYSTEM_DEFAULT_CHANNELS,
    ChannelSkip,
    CooldownClaim,
    EventDefinitionView,
    PreferenceDecision,
    PreferenceView,
    cooldown_blocks,
    custom_event_definition,
    decide_preferences,
    metric_value,
    system_event_definition,
    threshold_failure,
)
from aforo.shared.catalog import MANDATORY_EVENTS, SYSTEM_EVENTS, WEBHOOK_TEST_EVENT
from aforo.shared.delivery import (
    SYSTEM_THRESHOLD_METRICS,
    Channel,
    MetricDirection,
    SkipReason,
    ThresholdMetric,
)
from aforo.shared.envelope import EventEnvelope
from tests.support.envelopes import make_envelope

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
NO_METRIC = "\N{EN DASH}"  # how docs/dispatch.md spells "none" in its tables
DOCS = Path(__file__).resolve().parents[3] / "docs" / "dispatch.md"
E, W, S, P = Channel.EMAIL, Channel.WEBHOOK, Channel.SMS, Channel.PAGERDUTY


def envelope(
    event_type: str, payload: dict[str, Any] | None = None, event_id: str = "evt-1"
) -> EventEnvelope:
    return make_envelope(
        event_type,
        event_id=event_id,
        payload={"tenantId": "t1", "customerId": "c1", **(payload or {})},
        occurred_at=NOW,
    )


def definition(event_type: str) -> EventDefinitionView:
    found = system_event_definition(event_type)
    assert found is not None
    return found


def preference(
    *channels: Channel, enabled: bool = True, threshold: str | None = None, cooldown: int | None = None
) -> PreferenceView:
    return PreferenceView(
        enabled=enabled,
        channels=frozenset(channels),
        threshold=None if threshold is None else Decimal(threshold),
        cooldown_minutes=cooldown,
    )


def skips(decision: PreferenceDecision) -> list[tuple[Channel, SkipReason]]:
    return [(skip.channel, skip.reason) for skip in decision.skipped]


@pytest.mark.parametrize(
    ("event_type", "payload", "row", "deliver", "skipped", "event_skip"),
    [
        pytest.param("INVOICE_GENERATED", {}, None, {W}, [], None, id="no row: default channels"),
        pytest.param("INVOICE_GENERATED", {}, preference(E, W), {E, W}, [], None, id="chosen channels"),
        pytest.param(
            "INVOICE_GENERATED",
            {},
            preference(E),
            {E},
            [(W, SkipReason.CHANNEL_NOT_CHOSEN)],
            None,
            id="default channel not chosen",
        ),
        pytest.param(
            "INVOICE_GENERATED",
            {},
            preference(),
            set(),
            [(W, SkipReason.CHANNEL_NOT_CHOSEN)],
            None,
            id="none chosen",
        ),
        pytest.param(
            "INVOICE_GENERATED",
            {},
            preference(E, enabled=False),
            set(),
            [(E, SkipReason.PREFERENCE_DISABLED), (W, SkipReason.PREFERENCE_DISABLED)],
            SkipReason.PREFERENCE_DISABLED,
            id="disabled: every candidate channel",
        ),
        pytest.param(
            "INVOICE_GENERATED",
            {"amountDue": 50},
            preference(E, enabled=False, threshold="100"),
            set(),
            [(E, SkipReason.PREFERENCE_DISABLED), (W, SkipReason.PREFERENCE_DISABLED)],
            SkipReason.PREFERENCE_DISABLED,
            id="disabled is checked before threshold",
        ),
        pytest.param(
            "INVOICE_GENERATED",
            {"amountDue": 50},
            preference(E, threshold="100"),
            set(),
            [(E, SkipReason.THRESHOLD), (W, SkipReason.CHANNEL_NOT_CHOSEN)],
            SkipReason.THRESHOLD,
            id="threshold drops chosen, unchosen keep their reason",
        ),
        pytest.param(
            "SUBSCRIPTION_ACTIVATED",
            {},
            preference(W, threshold="100"),
            {W},
            [],
            None,
            id="no metric: threshold n/a",
        ),
        pytest.param(
            "PAYMENT_OVERDUE",
            {"amountDue": 1},
            preference(E, enabled=False, threshold="1000", cooldown=60),
            {E, W},
            [],
            None,
            id="mandatory: defaults plus chosen, every gate bypassed",
        ),
        pytest.param(
            "SERVICE_DEGRADATION",
            {},
            preference(),
            {W},
            [],
            None,
            id="mandatory: nothing chosen still defaults",
        ),
        pytest.param(
            WEBHOOK_TEST_EVENT, {}, preference(E, enabled=False), {W}, [], None, id="webhook.test bypasses"
        ),
    ],
)
def test_gates(
    event_type: str,
    payload: dict[str, Any],
    row: PreferenceView | None,
    deliver: set[Channel],
    skipped: list[tuple[Channel, SkipReason]],
    event_skip: SkipReason | None,
) -> None:
    decision = decide_preferences(envelope(event_type, payload), definition(event_type), row, now=NOW)
    assert decision.deliver == deliver
    assert skips(decision) == skipped
    assert decision.event_skip is event_skip
    assert decision.cooldown_claim is None


@pytest.mark.parametrize(
    ("event_type", "payload", "threshold", "passes"),
    [
        ("INVOICE_GENERATED", {"amountDue": 150}, "100", True),
        ("INVOICE_GENERATED", {"amountDue": 100}, "100", True),
        ("INVOICE_GENERATED", {"amountDue": 99.99}, "100", False),
        ("INVOICE_GENERATED", {"amountDue": "100.00"}, "100", True),
        ("INVOICE_GENERATED", {"amountDue": 10**30}, "99999999999999999999999999999", True),
        ("INVOICE_GENERATED", {"amountDue": 10**30 - 1}, str(10**30), False),
        ("WALLET_LOW_BALANCE", {"balance": 10}, "20", True),
        ("WALLET_LOW_BALANCE", {"balance": 20}, "20", True),
        ("WALLET_LOW_BALANCE", {"balance": 30}, "20", False),
        ("WALLET_LOW_BALANCE", {"balance": -5}, "0", True),
        ("TRIAL_EXPIRING_SOON", {"daysRemaining": 3}, "7", True),
        ("TRIAL_EXPIRING_SOON", {"daysRemaining": 10}, "7", False),
        ("USAGE_THRESHOLD_REACHED", {"usagePercent": 80}, "80", True),
        ("USAGE_THRESHOLD_REACHED", {"usagePercent": 79.5}, "80", False),
        ("USAGE_LIMIT_EXCEEDED", {"usagePercent": 120}, "100", True),
        ("PACING_ALERT_PROJECTED", {"projectedUsagePercent": 95}, "90", True),
        ("PACING_ALERT_PROJECTED", {"usagePercent": 95}, "90", False),
        ("WEEKLY_DROP_DETECTED", {"dropPercent": 25}, "30", False),
        ("WEEKLY_DROP_DETECTED", {"dropPercent": "1e2"}, "30", True),
    ],
)
def test_threshold_compares_the_primary_metric_in_its_direction(
    event_type: str, payload: dict[str, Any], threshold: str, passes: bool
) -> None:
    decision = decide_preferences(
        envelope(event_type, payload), definition(event_type), preference(W, threshold=threshold), now=NOW
    )
    assert (decision.deliver == {W}) is passes
    assert (decision.event_skip is SkipReason.THRESHOLD) is not passes


@pytest.mark.parametrize(
    ("payload", "detail"),
    [
        ({}, "payload field 'amountDue' is missing"),
        ({"amountDue": None}, "payload field 'amountDue' is not a number (null)"),
        ({"amountDue": "lots"}, "payload field 'amountDue' is not a number (str)"),
        ({"amountDue": True}, "payload field 'amountDue' is not a number (bool)"),
        ({"amountDue": {"value": 5}}, "payload field 'amountDue' is not a number (dict)"),
        ({"amountDue": " 150"}, "payload field 'amountDue' is not a number (str)"),
        ({"amountDue": 5}, "amountDue 5 is below threshold 100"),
    ],
)
def test_threshold_skip_names_the_field(payload: dict[str, Any], detail: str) -> None:
    decision = decide_preferences(
        envelope("INVOICE_GENERATED", payload),
        definition("INVOICE_GENERATED"),
        preference(W, threshold="100"),
        now=NOW,
    )
    assert decision.event_skip is SkipReason.THRESHOLD
    assert decision.skipped[0].detail is not None
    assert decision.skipped[0].detail.startswith(detail)


@pytest.mark.parametrize(
    ("threshold_field", "direction", "payload", "passes"),
    [
        ("usage.percent", MetricDirection.AT_OR_ABOVE, {"usage": {"percent": 90}}, True),
        ("usage.percent", MetricDirection.AT_OR_ABOVE, {"usage": {"percent": 10}}, False),
        ("lines[0].amount", MetricDirection.AT_OR_ABOVE, {"lines": [{"amount": 75}]}, True),
        ("lines.1.amount", MetricDirection.AT_OR_ABOVE, {"lines": [{"amount": 75}]}, False),
        ("seatsLeft", MetricDirection.AT_OR_BELOW, {"seatsLeft": 2}, True),
        ("seatsLeft", MetricDirection.AT_OR_BELOW, {"seatsLeft": 60}, False),
        (None, MetricDirection.AT_OR_ABOVE, {}, True),
    ],
)
def test_custom_threshold_field(
    threshold_field: str | None, direction: MetricDirection, payload: dict[str, Any], passes: bool
) -> None:
    custom = custom_event_definition("ORDER_SPIKE", frozenset({W}), threshold_field, direction)
    decision = decide_preferences(
        envelope("ORDER_SPIKE", payload), custom, preference(W, threshold="50"), now=NOW
    )
    assert (decision.deliver == {W}) is passes


def test_custom_threshold_field_is_checked_when_the_definition_is_built() -> None:
    with pytest.raises(ValueError, match="thresholdField"):
        ThresholdMetric("lines..amount")


def test_custom_definition_uses_its_own_default_channels() -> None:
    custom = custom_event_definition("ORDER_SPIKE", frozenset({E, S}))
    assert decide_preferences(envelope("ORDER_SPIKE"), custom, None, now=NOW).deliver == {E, S}


def test_catalog_decides_mandatory_even_if_a_definition_says_otherwise() -> None:
    stale = EventDefinitionView("SERVICE_DEGRADATION", frozenset({W}), mandatory=False)
    decision = decide_preferences(envelope("SERVICE_DEGRADATION"), stale, preference(enabled=False), now=NOW)
    assert decision.deliver == {W}


def test_definition_for_another_event_type_is_refused() -> None:
    with pytest.raises(ValueError, match="definition"):
        decide_preferences(envelope("INVOICE_GENERATED"), definition("TRIAL_EXPIRED"), None, now=NOW)


@pytest.mark.parametrize(
    ("last_sent_at", "cooldown_minutes", "blocked"),
    [
        pytest.param(None, 10, False, id="never sent"),
        pytest.param(NOW - timedelta(minutes=5), 10, True, id="within"),
        pytest.param(NOW - timedelta(minutes=10), 10, False, id="exactly elapsed"),
        pytest.param(NOW - timedelta(minutes=10, microseconds=-1), 10, True, id="a microsecond short"),
        pytest.param(NOW + timedelta(minutes=1), 10, True, id="other replica's clock ahead"),
        pytest.param(NOW - timedelta(minutes=5), 0, False, id="zero cooldown"),
        pytest.param(NOW - timedelta(minutes=5), None, False, id="no cooldown"),
    ],
)
def test_cooldown_gate(last_sent_at: datetime | None, cooldown_minutes: int | None, blocked: bool) -> None:
    row = preference(W, cooldown=cooldown_minutes)
    assert cooldown_blocks(last_sent_at, NOW, row.cooldown) is blocked
    decision = decide_preferences(
        envelope("INVOICE_GENERATED"),
        definition("INVOICE_GENERATED"),
        row,
        now=NOW,
        last_sent_at=last_sent_at,
    )
    assert (decision.event_skip is SkipReason.COOLDOWN) is blocked
    assert (decision.cooldown_claim is not None) is (not blocked and bool(cooldown_minutes))


def test_cooldown_is_not_claimed_for_an_event_the_threshold_drops() -> None:
    row = preference(W, threshold="100", cooldown=10)
    decision = decide_preferences(
        envelope("INVOICE_GENERATED", {"amountDue": 1}), definition("INVOICE_GENERATED"), row, now=NOW
    )
    assert decision.event_skip is SkipReason.THRESHOLD
    assert decision.cooldown_claim is None


def test_cooldown_claim_documents() -> None:
    row = preference(W, E, cooldown=15)
    decision = decide_preferences(
        envelope("INVOICE_GENERATED", event_id="evt-9"), definition("INVOICE_GENERATED"), row, now=NOW
    )
    claim = decision.cooldown_claim
    assert claim is not None
    assert COOLDOWN_COLLECTION == "notification_cooldowns"
    assert claim.filter() == {
        "tenantId": "t1",
        "customerId": "c1",
        "eventType": "INVOICE_GENERATED",
        "$or": [
            {"lastSentAt": {"$exists": False}},
            {"lastSentAt": {"$lte": NOW - timedelta(minutes=15)}},
            {"lastEventId": "evt-9"},
        ],
    }
    assert claim.update() == {"$set": {"lastSentAt": NOW, "lastEventId": "evt-9"}}


def test_cooldown_claim_writes_utc() -> None:
    paris = timezone(timedelta(hours=1))
    claim = CooldownClaim("t1", "c1", "INVOICE_GENERATED", "e", NOW.astimezone(paris), timedelta(minutes=1))
    assert claim.update()["$set"]["lastSentAt"].utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("now", "cooldown"),
    [(datetime(2026, 1, 1), timedelta(minutes=1)), (NOW, timedelta(0)), (NOW, timedelta(minutes=-1))],
)
def test_cooldown_claim_refuses_bad_input(now: datetime, cooldown: timedelta) -> None:
    with pytest.raises(ValueError, match=r"^(now|cooldown):"):
        CooldownClaim("t1", "c1", "X", "e", now, cooldown)


def test_lost_cooldown_claim_turns_deliveries_into_cooldown_skips() -> None:
    row = preference(E, P, cooldown=15)
    decision = decide_preferences(
        envelope("INVOICE_GENERATED"), definition("INVOICE_GENERATED"), row, now=NOW
    )
    assert decision.deliver == {E, P}
    lost = decision.cooldown_lost()
    assert lost.deliver == frozenset()
    assert lost.event_skip is SkipReason.COOLDOWN
    assert lost.cooldown_claim is None
    assert skips(lost) == [
        (E, SkipReason.COOLDOWN),
        (W, SkipReason.CHANNEL_NOT_CHOSEN),
        (P, SkipReason.COOLDOWN),
    ]


@pytest.mark.parametrize("naive", ["now", "last_sent_at"])
def test_naive_times_are_refused(naive: str) -> None:
    times = {"now": NOW, "last_sent_at": NOW}
    times[naive] = datetime(2026, 1, 1)
    with pytest.raises(ValueError, match=naive):
        cooldown_blocks(times["last_sent_at"], times["now"], timedelta(minutes=1))


def test_every_system_event_has_a_metric_entry_and_a_definition() -> None:
    assert set(SYSTEM_THRESHOLD_METRICS) == set(SYSTEM_EVENTS)
    for event_type, system_event in SYSTEM_EVENTS.items():
        found = definition(event_type)
        assert found.default_channels == SYSTEM_DEFAULT_CHANNELS
        assert found.is_mandatory is system_event.mandatory is (event_type in MANDATORY_EVENTS)
    assert system_event_definition("ORDER_SPIKE") is None


def test_docs_table_matches_the_code() -> None:
    rows = re.findall(r"^\| `?([A-Z_]+)`? \| (.+?) \| (.+?) \|", DOCS.read_text(), flags=re.MULTILINE)
    documented = {event_type: (field.strip("` "), direction.strip()) for event_type, field, direction in rows}
    expected = {
        event_type: (NO_METRIC, NO_METRIC)
        if metric is None
        else (metric.field_path, metric.direction.value.replace("_", " "))
        for event_type, metric in SYSTEM_THRESHOLD_METRICS.items()
    }
    assert {key: documented.get(key) for key in expected} == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (5, Decimal(5)),
        (-5, Decimal(-5)),
        (10**40, Decimal(10**40)),
        (0.1, Decimal("0.1")),
        ("12.50", Decimal("12.50")),
        ("-3", Decimal(-3)),
        ("1e3", Decimal(1000)),
        (Decimal("2.5"), Decimal("2.5")),
        (True, None),
        (None, None),
        (float("nan"), None),
        (float("inf"), None),
        (Decimal("NaN"), None),
        ("NaN", None),
        ("Infinity", None),
        ("", None),
        ("1_000", None),
        (" 12", None),
        ("0x10", None),
        ("1" * 101, None),
        ([1], None),
    ],
)
def test_metric_value(value: object, expected: Decimal | None) -> None:
    assert metric_value(value) == expected


def test_metric_value_reads_decimal128_like_objects() -> None:
    class Decimal128Like:
        def to_decimal(self) -> Decimal:
            return Decimal("7.25")

    assert metric_value(Decimal128Like()) == Decimal("7.25")


@given(
    value=st.decimals(min_value=-(10**12), max_value=10**12, places=4),
    threshold=st.decimals(min_value=-(10**12), max_value=10**12, places=4),
    direction=st.sampled_from(MetricDirection),
    as_text=st.booleans(),
)
def test_threshold_direction_property(
    value: Decimal, threshold: Decimal, direction: MetricDirection, as_text: bool
) -> None:
    metric = ThresholdMetric("metric", direction)
    sent: object = format(value, "f") if as_text else float(value)
    number = Decimal(sent) if isinstance(sent, str) else Decimal(repr(sent))
    passes = number >= threshold if direction is MetricDirection.AT_OR_ABOVE else number <= threshold
    assert (threshold_failure({"metric": sent}, metric, threshold) is None) is passes


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({}, PreferenceView()),
        (
            {"enabled": False, "channels": ["EMAIL", "SMS"], "threshold": 12.5, "cooldownMinutes": 30},
            PreferenceView(False, frozenset({E, S}), Decimal("12.5"), 30),
        ),
        ({"threshold": "100"}, PreferenceView(threshold=Decimal(100))),
    ],
)
def test_preference_from_document(document: dict[str, Any], expected: PreferenceView) -> None:
    assert PreferenceView.from_document({"tenantId": "t1", "customerId": "c1", **document}) == expected


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"enabled": "yes"}, "enabled"),
        ({"channels": "EMAIL"}, "channels"),
        ({"channels": ["FAX"]}, "channels"),
        ({"threshold": "lots"}, "threshold"),
        ({"threshold": float("nan")}, "threshold"),
        ({"cooldownMinutes": 1.5}, "cooldownMinutes"),
        ({"cooldownMinutes": True}, "cooldownMinutes"),
        ({"cooldownMinutes": -1}, "cooldownMinutes"),
    ],
)
def test_preference_from_document_names_the_bad_field(document: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}:"):
        PreferenceView.from_document(document)


def test_skip_reason_values_are_the_contract() -> None:
    assert [reason.value for reason in SkipReason] == [
        "preference_disabled",
        "channel_not_chosen",
        "cooldown",
        "threshold",
        "endpoint_filter",
        "endpoint_inactive",
        "no_destination",
    ]
    assert ChannelSkip(W, SkipReason.COOLDOWN).detail is None
