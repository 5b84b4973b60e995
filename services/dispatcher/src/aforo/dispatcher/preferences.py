"""Which channels one event goes out on, after the customer's notification preferences.

A pure decision over plain data: the envelope, the event's definition, the customer's preference row
for that event type (or none) and, for the cooldown gate, when it was last sent. The gates run in a
fixed order - enabled, channels, threshold, cooldown - so the cooldown slot is only claimed for an
event that would otherwise go out. Mandatory events and the `webhook.test` probe pass every gate.
The cross-replica cooldown state lives in MongoDB; `CooldownClaim` builds the one atomic
`find_one_and_update` that claims it, so the adapter only runs it. See docs/dispatch.md.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from aforo.shared.catalog import MANDATORY_EVENTS, SYSTEM_EVENTS, WEBHOOK_TEST_EVENT
from aforo.shared.delivery import (
    SYSTEM_THRESHOLD_METRICS,
    Channel,
    MetricDirection,
    SkipReason,
    ThresholdMetric,
)
from aforo.shared.envelope import EventEnvelope
from aforo.shared.rules.field_path import PathStep

_CHANNEL_ORDER: Final = {channel: position for position, channel in enumerate(Channel)}

SYSTEM_DEFAULT_CHANNELS: Final = frozenset({Channel.WEBHOOK})
"""Where a SYSTEM event goes when the customer has no preference row: the webhook endpoints."""


@dataclass(frozen=True)
class EventDefinitionView:
    """What the preference gates need to know about an event type."""

    event_type: str
    default_channels: frozenset[Channel]
    mandatory: bool = False
    threshold_metric: ThresholdMetric | None = None

    @property
    def is_mandatory(self) -> bool:
        # The catalog wins: a stale or hand-edited definition cannot make a mandatory event optional.
        return self.mandatory or self.event_type in MANDATORY_EVENTS


@functools.lru_cache(maxsize=256)
def system_event_definition(
    event_type: str, default_channels: frozenset[Channel] = SYSTEM_DEFAULT_CHANNELS
) -> EventDefinitionView | None:
    """The definition of a SYSTEM event or of `webhook.test`; None for any other (CUSTOM) type.
    Remembered (the catalog does not change while a process runs): every event asks for one."""
    if event_type == WEBHOOK_TEST_EVENT:
        return EventDefinitionView(WEBHOOK_TEST_EVENT, frozenset({Channel.WEBHOOK}))
    system_event = SYSTEM_EVENTS.get(event_type)
    if system_event is None:
        return None
    return EventDefinitionView(
        event_type,
        frozenset(default_channels),
        mandatory=system_event.mandatory,
        threshold_metric=SYSTEM_THRESHOLD_METRICS[event_type],
    )


def custom_event_definition(
    event_type: str,
    default_channels: frozenset[Channel],
    threshold_field: str | None = None,
    threshold_direction: MetricDirection = MetricDirection.AT_OR_ABOVE,
) -> EventDefinitionView:
    """A CUSTOM definition: its threshold metric is the `thresholdField` it names, if any."""
    metric = None if threshold_field is None else ThresholdMetric(threshold_field, threshold_direction)
    return EventDefinitionView(event_type, frozenset(default_channels), threshold_metric=metric)


@dataclass(frozen=True)
class PreferenceView:
    """A customer's notification preference for one event type (a `notification_preferences` row)."""

    enabled: bool = True
    channels: frozenset[Channel] = frozenset()
    threshold: Decimal | None = None
    cooldown_minutes: int | None = None

    def __post_init__(self) -> None:
        if self.threshold is not None and not self.threshold.is_finite():
            raise ValueError(f"threshold: must be a finite number, got {self.threshold}")
        if self.cooldown_minutes is not None and self.cooldown_minutes < 0:
            raise ValueError(f"cooldownMinutes: must be >= 0, got {self.cooldown_minutes}")

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> PreferenceView:
        """Read the row the API stored (camelCase); raise ValueError naming the bad field."""
        enabled = document.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ValueError(f"enabled: expected a boolean, got {type(enabled).__name__}")
        raw_channels = document.get("channels", [])
        if not isinstance(raw_channels, list | tuple):
            raise ValueError(f"channels: expected a list, got {type(raw_channels).__name__}")
        try:
            channels = frozenset(Channel(value) for value in raw_channels)
        except ValueError as error:
            raise ValueError(f"channels: {error}") from error
        raw_threshold = document.get("threshold")
        threshold = None if raw_threshold is None else metric_value(raw_threshold)
        if raw_threshold is not None and threshold is None:
            raise ValueError(f"threshold: expected a finite number, got {raw_threshold!r}")
        cooldown = document.get("cooldownMinutes")
        if cooldown is not None and (isinstance(cooldown, bool) or not isinstance(cooldown, int)):
            raise ValueError(f"cooldownMinutes: expected an integer, got {cooldown!r}")
        return cls(enabled=enabled, channels=channels, threshold=threshold, cooldown_minutes=cooldown)

    @property
    def cooldown(self) -> timedelta | None:
        """The cooldown as a duration; None when there is none (unset or 0)."""
        if not self.cooldown_minutes:
            return None
        return timedelta(minutes=self.cooldown_minutes)


# A JSON-number-shaped string: money is often sent as text ("12.50") to keep its precision.
_DECIMAL_TEXT: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_MAX_DECIMAL_TEXT_LENGTH: Final = 100


def metric_value(value: object) -> Decimal | None:
    """A payload value as an exact number, or None when it is not one.

    Exact (Decimal) so that a 30-digit `amountDue` compares as sent. Numbers and decimal strings count;
    booleans, NaN/Infinity and anything else do not. Objects with `to_decimal()` (BSON Decimal128)
    are read through it, so a threshold stored as Decimal128 works without importing bson.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value)) if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if isinstance(value, str):
        if len(value) <= _MAX_DECIMAL_TEXT_LENGTH and _DECIMAL_TEXT.fullmatch(value):
            return Decimal(value)
        return None
    to_decimal = getattr(value, "to_decimal", None)
    if callable(to_decimal):
        converted = to_decimal()
        if isinstance(converted, Decimal) and converted.is_finite():
            return converted
    return None


_MISSING: Final = object()


def _resolve(payload: Any, steps: tuple[PathStep, ...]) -> Any:
    """Follow a parsed field path (trigger-rule semantics); `_MISSING` when it leads nowhere."""
    value = payload
    # Unpacked: PathStep is a NamedTuple, so `step.index` would be tuple.index to a type checker.
    for key, index in steps:
        if isinstance(value, Mapping):
            value = value.get(key, _MISSING)
        elif isinstance(value, list | tuple) and index is not None and index < len(value):
            value = value[index]
        else:
            return _MISSING
        if value is _MISSING:
            return _MISSING
    return value


def threshold_failure(payload: Mapping[str, Any], metric: ThresholdMetric, threshold: Decimal) -> str | None:
    """None when the event passes the threshold; otherwise why not, naming the payload field."""
    raw = _resolve(payload, metric.steps)
    if raw is _MISSING:
        return f"payload field {metric.field_path!r} is missing, so threshold {threshold} cannot be checked"
    value = metric_value(raw)
    if value is None:
        kind = "null" if raw is None else type(raw).__name__
        return (
            f"payload field {metric.field_path!r} is not a number ({kind}), "
            f"so threshold {threshold} cannot be checked"
        )
    if metric.direction is MetricDirection.AT_OR_ABOVE:
        return None if value >= threshold else f"{metric.field_path} {value} is below threshold {threshold}"
    return None if value <= threshold else f"{metric.field_path} {value} is above threshold {threshold}"


def cooldown_blocks(last_sent_at: datetime | None, now: datetime, cooldown: timedelta | None) -> bool:
    """Whether the cooldown gate drops an event, from when this (customer, type) was last sent.

    The slot frees exactly `cooldown` after the last send (the MongoDB claim uses the same `<=`).
    A `last_sent_at` in the future (another replica's clock ahead) blocks: it is within the window.
    """
    _require_aware(now, "now")
    if cooldown is None or cooldown <= timedelta(0) or last_sent_at is None:
        return False
    _require_aware(last_sent_at, "last_sent_at")
    return now - last_sent_at < cooldown


COOLDOWN_COLLECTION: Final = "notification_cooldowns"
"""Where cooldown slots live; needs a unique index on (tenantId, customerId, eventType)."""


@dataclass(frozen=True)
class CooldownClaim:
    """The atomic "claim the cooldown slot" for one (tenant, customer, event type), as MongoDB documents.

    Run as `find_one_and_update(claim.filter(), claim.update(), upsert=True)` on `COOLDOWN_COLLECTION`.
    It matches (and moves `lastSentAt` to now) only when the slot is free: never used, expired, or
    already claimed by this very event (a Kafka replay of the event must not be cooled down by its
    own first delivery). When nothing matches, the upsert inserts a new slot document, which the
    unique index refuses with DuplicateKeyError if a slot exists: that error means "cooling down,
    or another replica claimed it first" - skip with `cooldown`. Any other outcome means claimed.
    """

    tenant_id: str
    customer_id: str
    event_type: str
    event_id: str
    now: datetime
    cooldown: timedelta

    def __post_init__(self) -> None:
        _require_aware(self.now, "now")
        if self.cooldown <= timedelta(0):
            raise ValueError(f"cooldown: must be positive, got {self.cooldown}")

    def filter(self) -> dict[str, Any]:
        return {
            "tenantId": self.tenant_id,
            "customerId": self.customer_id,
            "eventType": self.event_type,
            "$or": [
                {"lastSentAt": {"$exists": False}},
                {"lastSentAt": {"$lte": self.now.astimezone(UTC) - self.cooldown}},
                {"lastEventId": self.event_id},
            ],
        }

    def update(self) -> dict[str, Any]:
        # tenantId/customerId/eventType are equality fields of the filter, so an upsert copies them.
        return {"$set": {"lastSentAt": self.now.astimezone(UTC), "lastEventId": self.event_id}}


@dataclass(frozen=True)
class ChannelSkip:
    """One channel the event does not go out on, the gate that dropped it and, if useful, why."""

    channel: Channel
    reason: SkipReason
    detail: str | None = None


@dataclass(frozen=True)
class PreferenceDecision:
    """The outcome of the preference gates for one event.

    `deliver` are the channels to send on; `skipped` has one entry per other candidate channel (the
    definition's defaults and the customer's chosen channels), so the delivery log gets one SKIPPED
    row per channel: a chosen channel carries the whole-event gate that dropped it, an unchosen one
    `channel_not_chosen` (all of them `preference_disabled` when the row is disabled). `event_skip`
    is set when a whole-event gate (disabled, threshold, cooldown) dropped the event. When
    `cooldown_claim` is set the adapter must claim the slot before delivering and, if the claim is
    refused, use `cooldown_lost()` instead.
    """

    deliver: frozenset[Channel]
    skipped: tuple[ChannelSkip, ...] = ()
    event_skip: SkipReason | None = None
    cooldown_claim: CooldownClaim | None = None

    def cooldown_lost(self) -> PreferenceDecision:
        """The decision once the cooldown claim was refused: the channels to deliver become skips."""
        detail = "this event type was sent to the customer within the cooldown (claim refused)"
        gated = tuple(ChannelSkip(channel, SkipReason.COOLDOWN, detail) for channel in _sorted(self.deliver))
        return PreferenceDecision(
            frozenset(), _by_channel(gated + self.skipped), event_skip=SkipReason.COOLDOWN
        )


def decide_preferences(
    envelope: EventEnvelope,
    definition: EventDefinitionView,
    preference: PreferenceView | None,
    *,
    now: datetime,
    last_sent_at: datetime | None = None,
) -> PreferenceDecision:
    """Apply the preference gates to one event (see the module docstring for the order).

    `last_sent_at` is what the adapter knows of the cooldown slot (None if nothing): a hit skips the
    event without a MongoDB write; a miss still goes through the atomic `cooldown_claim`.
    """
    _require_aware(now, "now")
    if definition.event_type != envelope.event_type:
        raise ValueError(
            f"definition: is for {definition.event_type!r}, the event is {envelope.event_type!r}"
        )
    if envelope.event_type == WEBHOOK_TEST_EVENT:
        # An explicit probe of one endpoint: preferences are about business events, not this.
        return PreferenceDecision(deliver=frozenset({Channel.WEBHOOK}))
    chosen = definition.default_channels if preference is None else preference.channels
    if definition.is_mandatory:
        return PreferenceDecision(deliver=definition.default_channels | chosen)
    if preference is None:
        return PreferenceDecision(deliver=frozenset(chosen))
    candidates = _sorted(definition.default_channels | chosen)
    if not preference.enabled:
        skips = tuple(ChannelSkip(channel, SkipReason.PREFERENCE_DISABLED) for channel in candidates)
        return PreferenceDecision(frozenset(), skips, event_skip=SkipReason.PREFERENCE_DISABLED)
    not_chosen = tuple(
        ChannelSkip(channel, SkipReason.CHANNEL_NOT_CHOSEN) for channel in candidates if channel not in chosen
    )

    def whole_event_skip(reason: SkipReason, detail: str) -> PreferenceDecision:
        gated = tuple(ChannelSkip(channel, reason, detail) for channel in _sorted(chosen))
        return PreferenceDecision(frozenset(), _by_channel(gated + not_chosen), event_skip=reason)

    if not chosen:
        return PreferenceDecision(frozenset(), not_chosen)
    if preference.threshold is not None and definition.threshold_metric is not None:
        failure = threshold_failure(envelope.payload, definition.threshold_metric, preference.threshold)
        if failure is not None:
            return whole_event_skip(SkipReason.THRESHOLD, failure)
    cooldown = preference.cooldown
    if cooldown is None:
        return PreferenceDecision(frozenset(chosen), not_chosen)
    if cooldown_blocks(last_sent_at, now, cooldown):
        return whole_event_skip(SkipReason.COOLDOWN, f"last sent at {last_sent_at}, cooldown {cooldown}")
    claim = CooldownClaim(
        envelope.tenant_id, envelope.customer_id, envelope.event_type, envelope.event_id, now, cooldown
    )
    return PreferenceDecision(frozenset(chosen), not_chosen, cooldown_claim=claim)


def _by_channel(skips: tuple[ChannelSkip, ...]) -> tuple[ChannelSkip, ...]:
    return tuple(sorted(skips, key=lambda skip: _CHANNEL_ORDER[skip.channel]))


def _sorted(channels: frozenset[Channel]) -> tuple[Channel, ...]:
    return tuple(sorted(channels, key=_CHANNEL_ORDER.__getitem__))


def _require_aware(moment: datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name}: must be timezone-aware")
