"""The delivery vocabulary the API and the dispatcher share: channels, row statuses, skip gates,
and the primary metric a preference threshold compares for each SYSTEM event.

Defined once here so the API validates exactly what the dispatcher enforces.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from aforo.shared.rules.field_path import PathStep, parse_field_path

ENVELOPE_FIELD: Final = "envelopeJson"
"""The delivery-log row field holding the delivered envelope's exact JSON text (binary if it is not
UTF-8): what a replay re-sends. Never a nested document, since a payload may hold what BSON cannot."""

LEGACY_ENVELOPE_FIELD: Final = "envelope"
"""Rows written before `envelopeJson` kept the envelope as a document; readers still accept it."""


class Channel(StrEnum):
    """A way to reach an end customer; the wire spelling is the value."""

    EMAIL = "EMAIL"
    WEBHOOK = "WEBHOOK"
    SMS = "SMS"
    PAGERDUTY = "PAGERDUTY"


class SkipReason(StrEnum):
    """The gate that dropped a channel or endpoint; written as `skipReason` on SKIPPED log rows."""

    PREFERENCE_DISABLED = "preference_disabled"
    CHANNEL_NOT_CHOSEN = "channel_not_chosen"
    COOLDOWN = "cooldown"
    THRESHOLD = "threshold"
    ENDPOINT_FILTER = "endpoint_filter"
    ENDPOINT_INACTIVE = "endpoint_inactive"
    NO_DESTINATION = "no_destination"
    """A chosen EMAIL/SMS/PAGERDUTY channel with no active destination subscribed to the event."""


class MetricDirection(StrEnum):
    """Which side of the threshold lets an event through."""

    AT_OR_ABOVE = "at_or_above"
    """Amounts, usage, drops: the event passes when the metric is >= the threshold."""
    AT_OR_BELOW = "at_or_below"
    """Balances, days left: the event passes when the metric is <= the threshold."""


@dataclass(frozen=True)
class ThresholdMetric:
    """The payload field a preference threshold is compared with, and in which direction.

    The path is parsed once here (same syntax as trigger rules: `a.b`, `lines[0].amount`), so a bad
    CUSTOM `thresholdField` fails when the definition is loaded, not per event.
    """

    field_path: str
    direction: MetricDirection = MetricDirection.AT_OR_ABOVE
    steps: tuple[PathStep, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            steps = parse_field_path(self.field_path)
        except ValueError as error:
            raise ValueError(f"thresholdField: {error}") from error
        object.__setattr__(self, "steps", steps)


_UP, _DOWN = MetricDirection.AT_OR_ABOVE, MetricDirection.AT_OR_BELOW

SYSTEM_THRESHOLD_METRICS: Final[Mapping[str, ThresholdMetric | None]] = {
    "INVOICE_GENERATED": ThresholdMetric("amountDue", _UP),
    "PAYMENT_OVERDUE": ThresholdMetric("amountDue", _UP),
    "WALLET_LOW_BALANCE": ThresholdMetric("balance", _DOWN),
    "WALLET_BALANCE_DEPLETED": ThresholdMetric("balance", _DOWN),
    # State changes carry no magnitude to compare: a threshold on them does not apply.
    "SUBSCRIPTION_ACTIVATED": None,
    "SUBSCRIPTION_CANCELLED": None,
    "TRIAL_EXPIRED": None,
    "TRIAL_EXPIRING_SOON": ThresholdMetric("daysRemaining", _DOWN),
    "USAGE_LIMIT_EXCEEDED": ThresholdMetric("usagePercent", _UP),
    "USAGE_THRESHOLD_REACHED": ThresholdMetric("usagePercent", _UP),
    "PACING_ALERT_PROJECTED": ThresholdMetric("projectedUsagePercent", _UP),
    "WEEKLY_DROP_DETECTED": ThresholdMetric("dropPercent", _UP),
    "CREDENTIAL_DRIFT_DETECTED": None,
    "PROVISIONING_EXHAUSTED": None,
    "SERVICE_DEGRADATION": ThresholdMetric("uptimePercent", _DOWN),
}
"""The primary metric of every SYSTEM event (docs/dispatch.md has the same table)."""


class DeliveryStatus(StrEnum):
    """The status of one delivery-log row."""

    DELIVERED = "DELIVERED"
    FAILED = "FAILED"
    PENDING = "PENDING"
    RETRYING = "RETRYING"
    SKIPPED = "SKIPPED"
