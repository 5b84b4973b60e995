"""The SYSTEM event catalog and the widget (SSE) event names, defined once for every service.

Fourteen SYSTEM events come from the platform's design; WALLET_BALANCE_DEPLETED is a fifteenth
(Billing, CRITICAL) added because it is one of the three mandatory events (see docs/events.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from aforo.shared.envelope import EventCategory, Severity

WEBHOOK_TEST_EVENT = "webhook.test"
"""The reserved probe type fired by `POST /api/v1/webhook-endpoints/{id}/test`."""


@dataclass(frozen=True)
class SystemEvent:
    event_type: str
    category: EventCategory
    severity: Severity
    mandatory: bool = False


_B, _S, _U, _V = EventCategory.BILLING, EventCategory.SUBSCRIPTION, EventCategory.USAGE, EventCategory.SERVICE
_I, _W, _C = Severity.INFO, Severity.WARNING, Severity.CRITICAL

SYSTEM_EVENTS: dict[str, SystemEvent] = {
    event.event_type: event
    for event in (
        SystemEvent("INVOICE_GENERATED", _B, _I),
        SystemEvent("PAYMENT_OVERDUE", _B, _C, mandatory=True),
        SystemEvent("WALLET_LOW_BALANCE", _B, _W),
        SystemEvent("WALLET_BALANCE_DEPLETED", _B, _C, mandatory=True),
        SystemEvent("SUBSCRIPTION_ACTIVATED", _S, _I),
        SystemEvent("SUBSCRIPTION_CANCELLED", _S, _W),
        SystemEvent("TRIAL_EXPIRED", _S, _W),
        SystemEvent("TRIAL_EXPIRING_SOON", _S, _I),
        SystemEvent("USAGE_LIMIT_EXCEEDED", _U, _C),
        SystemEvent("USAGE_THRESHOLD_REACHED", _U, _W),
        SystemEvent("PACING_ALERT_PROJECTED", _U, _I),
        SystemEvent("WEEKLY_DROP_DETECTED", _U, _W),
        SystemEvent("CREDENTIAL_DRIFT_DETECTED", _V, _W),
        SystemEvent("PROVISIONING_EXHAUSTED", _V, _C),
        SystemEvent("SERVICE_DEGRADATION", _V, _C, mandatory=True),
    )
}

MANDATORY_EVENTS: frozenset[str] = frozenset(e.event_type for e in SYSTEM_EVENTS.values() if e.mandatory)


@dataclass(frozen=True)
class WidgetEvent:
    """An event for browser widgets (SSE); category/severity fill the canonical envelope."""

    event_type: str
    category: EventCategory
    severity: Severity


WIDGET_EVENTS: dict[str, WidgetEvent] = {
    event.event_type: event
    for event in (
        WidgetEvent("aforo.invoice.created", _B, _I),
        WidgetEvent("aforo.invoice.paid", _B, _I),
        WidgetEvent("aforo.payment.failed", _B, _W),
        WidgetEvent("aforo.subscription.status_changed", _S, _I),
        WidgetEvent("aforo.usage.threshold_breached", _U, _W),
    )
}
