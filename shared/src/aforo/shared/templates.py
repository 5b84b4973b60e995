"""Notification templates: the built-in one of every (event, channel), a tenant's overrides, rendering.

The API renders an override against a sample event when it is saved (422 naming the template field
and the undefined name or syntax error); the dispatcher renders the real event at delivery. Both go
through `render`, so what was accepted is what is sent.

Rules (docs/channels.md):
- jinja2's `SandboxedEnvironment` (templates are tenant input: no attribute walks to Python internals)
  with `StrictUndefined` (a misspelt name is an error, not an empty string);
- only the HTML part autoescapes; subject, text, SMS body and PagerDuty summary are plain text;
- a rendered e-mail subject with CR or LF is refused (header injection);
- an SMS body is cut to 1,600 characters and a PagerDuty summary to 1,024, ending with `…`.

Variables: `event_type`, `event_id`, `category`, `severity`, `occurred_at` (ISO-8601 UTC),
`tenant_id`, `customer_id`, `display_name`, `payload` (the producer's object) and `event` (the whole
envelope as sent on the wire).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

from jinja2 import StrictUndefined, Template, TemplateError, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment

from aforo.shared.catalog import SYSTEM_EVENTS, WEBHOOK_TEST_EVENT
from aforo.shared.channels import NOTIFICATION_TEST_EVENT
from aforo.shared.delivery import Channel
from aforo.shared.envelope import EventEnvelope, Severity

SMS_MAX_CHARACTERS: Final = 1600
"""Twilio's limit for one message body (it splits it into segments itself)."""
PAGERDUTY_SUMMARY_MAX_CHARACTERS: Final = 1024
"""PagerDuty's limit for `payload.summary`."""
SUBJECT_MAX_CHARACTERS: Final = 998
"""RFC 5322's line limit; a longer subject is cut like the SMS body."""
ELLIPSIS: Final = "…"
MAX_TEMPLATE_CHARACTERS: Final = 20_000

TEMPLATE_PARTS: Final[Mapping[Channel, tuple[str, ...]]] = {
    Channel.EMAIL: ("subject", "text", "html"),
    Channel.SMS: ("text",),
    Channel.PAGERDUTY: ("subject",),
}
"""Which parts a channel renders: the SMS body is `text`, the PagerDuty summary is `subject`."""

PAGERDUTY_SEVERITIES: Final[Mapping[Severity, str]] = {
    Severity.INFO: "info",
    Severity.WARNING: "warning",
    Severity.CRITICAL: "critical",
}


class TemplateRenderError(ValueError):
    """A template that does not render: `part` names the template field, `message` the name or error."""

    def __init__(self, part: str, message: str) -> None:
        super().__init__(f"{part}: {message}")
        self.part = part
        self.message = message


@dataclass(frozen=True)
class TemplateParts:
    """A template's sources; None means "the built-in part" in an override."""

    subject: str | None = None
    text: str | None = None
    html: str | None = None

    def part(self, name: str) -> str | None:
        value: str | None = getattr(self, name)
        return value


@dataclass(frozen=True)
class EmailContent:
    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class SmsContent:
    body: str


@dataclass(frozen=True)
class PagerDutyContent:
    summary: str
    severity: str
    custom_details: dict[str, Any]


RenderedContent = EmailContent | SmsContent | PagerDutyContent


# --------------------------------------------------------------------------- built-in templates

_HEADLINES: Final[Mapping[str, tuple[str, str | None, str | None]]] = {
    # event type: (headline, the payload field worth quoting, its label)
    "INVOICE_GENERATED": ("Your invoice is ready", "amountDue", "Amount due"),
    "PAYMENT_OVERDUE": ("A payment is overdue", "amountDue", "Amount due"),
    "WALLET_LOW_BALANCE": ("Your wallet balance is low", "balance", "Balance"),
    "WALLET_BALANCE_DEPLETED": ("Your wallet balance is used up", "balance", "Balance"),
    "SUBSCRIPTION_ACTIVATED": ("Your subscription is active", "planName", "Plan"),
    "SUBSCRIPTION_CANCELLED": ("Your subscription was cancelled", "planName", "Plan"),
    "TRIAL_EXPIRED": ("Your trial has ended", "planName", "Plan"),
    "TRIAL_EXPIRING_SOON": ("Your trial ends soon", "daysRemaining", "Days left"),
    "USAGE_LIMIT_EXCEEDED": ("A usage limit was exceeded", "usagePercent", "Usage (%)"),
    "USAGE_THRESHOLD_REACHED": ("A usage threshold was reached", "usagePercent", "Usage (%)"),
    "PACING_ALERT_PROJECTED": (
        "Usage is projected to exceed its plan",
        "projectedUsagePercent",
        "Projected (%)",
    ),
    "WEEKLY_DROP_DETECTED": ("Usage dropped this week", "dropPercent", "Drop (%)"),
    "CREDENTIAL_DRIFT_DETECTED": ("A credential changed unexpectedly", "credentialId", "Credential"),
    "PROVISIONING_EXHAUSTED": ("Provisioning capacity is exhausted", "resource", "Resource"),
    "SERVICE_DEGRADATION": ("A service is degraded", "uptimePercent", "Uptime (%)"),
    WEBHOOK_TEST_EVENT: ("Test notification", "message", "Message"),
    NOTIFICATION_TEST_EVENT: ("Test notification", "message", "Message"),
}

_GENERIC_HEADLINE: Final = "{{ display_name }}"

# Built-in templates read payload fields only behind `is defined`, so they render whatever the
# producer sent; an override may be stricter (it is checked against the sample when saved).
_DETAILS_TEXT: Final = (
    "{% for name, value in payload|dictsort %}{% if value is string or value is number %}"
    "- {{ name }}: {{ value }}\n{% endif %}{% endfor %}"
)
_DETAILS_HTML: Final = (
    "<ul>{% for name, value in payload|dictsort %}{% if value is string or value is number %}"
    "<li>{{ name }}: {{ value }}</li>{% endif %}{% endfor %}</ul>"
)


def _quoted(field: str | None, label: str | None, *, prefix: str, suffix: str) -> str:
    if field is None or label is None:
        return ""
    currency = " {{ payload.currency }}" if field in ("amountDue", "balance") else ""
    currency = f"{{% if payload.currency is defined %}}{currency}{{% endif %}}" if currency else ""
    return f"{{% if payload.{field} is defined %}}{prefix}{label}: {{{{ payload.{field} }}}}{currency}{suffix}{{% endif %}}"


@lru_cache(maxsize=256)
def builtin_template(event_type: str, channel: Channel) -> TemplateParts:
    """The template every SYSTEM event (and the probes) has per channel; CUSTOM types get the generic
    one, headed by their definition's display name."""
    headline, field, label = _HEADLINES.get(event_type, (_GENERIC_HEADLINE, None, None))
    if channel is Channel.EMAIL:
        text = (
            f"{headline}.\n\n"
            + _quoted(field, label, prefix="", suffix="\n")
            + "\nDetails:\n"
            + _DETAILS_TEXT
            + "\nEvent {{ event_type }} ({{ severity }}) at {{ occurred_at }}, reference {{ event_id }}.\n"
        )
        html = (
            f"<html><body><h1>{headline}</h1>"
            + _quoted(field, label, prefix="<p><strong>", suffix="</strong></p>")
            + _DETAILS_HTML
            + "<p>Event {{ event_type }} ({{ severity }}) at {{ occurred_at }}, reference {{ event_id }}.</p>"
            + "</body></html>"
        )
        return TemplateParts(subject=headline, text=text, html=html)
    if channel is Channel.SMS:
        return TemplateParts(
            text=f"{headline}." + _quoted(field, label, prefix=" ", suffix=".") + " Ref {{ event_id[:8] }}"
        )
    if channel is Channel.PAGERDUTY:
        return TemplateParts(
            subject=f"{headline} (customer {{{{ customer_id }}}})"
            + _quoted(field, label, prefix=": ", suffix="")
        )
    raise ValueError(f"channel: {channel.value} has no templates")


def effective_template(builtin: TemplateParts, override: TemplateParts | None) -> TemplateParts:
    """An override's parts where it has them, the built-in ones elsewhere."""
    if override is None:
        return builtin
    return TemplateParts(
        subject=override.subject if override.subject is not None else builtin.subject,
        text=override.text if override.text is not None else builtin.text,
        html=override.html if override.html is not None else builtin.html,
    )


# --------------------------------------------------------------------------- rendering

_TEXT_ENVIRONMENT: Final = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
_HTML_ENVIRONMENT: Final = SandboxedEnvironment(undefined=StrictUndefined, autoescape=True)


@lru_cache(maxsize=1024)
def _compiled(source: str, html: bool) -> Template:
    environment = _HTML_ENVIRONMENT if html else _TEXT_ENVIRONMENT
    return environment.from_string(source)


def compile_part(part: str, source: str) -> Template:
    """A part's compiled template, or TemplateRenderError naming the syntax error and its line."""
    if len(source) > MAX_TEMPLATE_CHARACTERS:
        raise TemplateRenderError(part, f"is longer than {MAX_TEMPLATE_CHARACTERS} characters")
    try:
        return _compiled(source, part == "html")
    except TemplateSyntaxError as error:
        raise TemplateRenderError(part, f"syntax error on line {error.lineno}: {error.message}") from None


def _render_part(part: str, source: str, context: Mapping[str, Any]) -> str:
    template = compile_part(part, source)
    try:
        return template.render(context)
    except UndefinedError as error:
        raise TemplateRenderError(part, f"undefined name: {error.message}") from None
    except TemplateError as error:  # the sandbox's SecurityError among them
        raise TemplateRenderError(part, f"{type(error).__name__}: {error.message}") from None
    except (TypeError, ValueError, ArithmeticError, LookupError) as error:
        raise TemplateRenderError(part, f"{type(error).__name__}: {error}") from None


def truncated(text: str, limit: int) -> str:
    """`text` cut to `limit` characters in all, the last one `…` when anything was cut."""
    return text if len(text) <= limit else text[: limit - len(ELLIPSIS)] + ELLIPSIS


def template_context(envelope: EventEnvelope, display_name: str | None = None) -> dict[str, Any]:
    wire = envelope.to_wire()
    return {
        "event_type": envelope.event_type,
        "event_id": envelope.event_id,
        "category": wire["category"],
        "severity": envelope.severity.value,
        "occurred_at": wire["occurredAt"],
        "tenant_id": envelope.tenant_id,
        "customer_id": envelope.customer_id,
        "display_name": display_name or envelope.event_type,
        "payload": envelope.payload,
        "event": wire,
    }


def render(channel: Channel, parts: TemplateParts, context: Mapping[str, Any]) -> RenderedContent:
    """The content of one delivery; TemplateRenderError names the part that does not render."""
    if channel is Channel.EMAIL:
        subject = _render_part("subject", parts.subject or "", context).strip()
        if "\r" in subject or "\n" in subject:
            raise TemplateRenderError(
                "subject", "renders a line break (CR or LF), which could inject headers"
            )
        return EmailContent(
            subject=truncated(subject, SUBJECT_MAX_CHARACTERS),
            text=_render_part("text", parts.text or "", context),
            html=_render_part("html", parts.html or "", context),
        )
    if channel is Channel.SMS:
        body = _render_part("text", parts.text or "", context).strip()
        return SmsContent(body=truncated(body, SMS_MAX_CHARACTERS))
    if channel is Channel.PAGERDUTY:
        summary = " ".join(_render_part("subject", parts.subject or "", context).split())
        severity = Severity(context["severity"])
        payload = context.get("payload")
        return PagerDutyContent(
            summary=truncated(summary, PAGERDUTY_SUMMARY_MAX_CHARACTERS),
            severity=PAGERDUTY_SEVERITIES[severity],
            custom_details=dict(payload) if isinstance(payload, Mapping) else {},
        )
    raise ValueError(f"channel: {channel.value} has no templates")


# --------------------------------------------------------------------------- checks at save time

SAMPLE_PAYLOADS: Final[Mapping[str, Mapping[str, Any]]] = {
    "INVOICE_GENERATED": {
        "invoiceNumber": "INV-2026-0000042",
        "currency": "USD",
        "subtotal": 10000,
        "tax": 2000,
        "amountDue": 12000,
        "periodStart": "2026-10-01",
        "periodEnd": "2026-10-31",
        "dueDate": "2026-11-14",
        "lines": [{"sku": "api-calls", "quantity": 1000, "unitAmount": 10, "amount": 10000}],
    },
    "PAYMENT_OVERDUE": {
        "invoiceNumber": "INV-2026-0000042",
        "currency": "USD",
        "amountDue": 12000,
        "dueDate": "2026-11-14",
        "daysOverdue": 7,
    },
    "WALLET_LOW_BALANCE": {"walletId": "w_1", "currency": "USD", "balance": 500, "threshold": 1000},
    "WALLET_BALANCE_DEPLETED": {"walletId": "w_1", "currency": "USD", "balance": 0},
    "SUBSCRIPTION_ACTIVATED": {"subscriptionId": "sub_1", "planName": "Growth", "startsAt": "2026-11-01"},
    "SUBSCRIPTION_CANCELLED": {"subscriptionId": "sub_1", "planName": "Growth", "endsAt": "2026-11-30"},
    "TRIAL_EXPIRED": {"subscriptionId": "sub_1", "planName": "Growth", "endedAt": "2026-11-01"},
    "TRIAL_EXPIRING_SOON": {"subscriptionId": "sub_1", "planName": "Growth", "daysRemaining": 3},
    "USAGE_LIMIT_EXCEEDED": {"metric": "api-calls", "usage": 1100, "limit": 1000, "usagePercent": 110},
    "USAGE_THRESHOLD_REACHED": {"metric": "api-calls", "usage": 800, "limit": 1000, "usagePercent": 80},
    "PACING_ALERT_PROJECTED": {
        "metric": "api-calls",
        "projectedUsagePercent": 130,
        "periodEnd": "2026-11-30",
    },
    "WEEKLY_DROP_DETECTED": {"metric": "api-calls", "dropPercent": 40, "previousWeek": 1000, "thisWeek": 600},
    "CREDENTIAL_DRIFT_DETECTED": {"credentialId": "cred_1", "service": "billing-sync"},
    "PROVISIONING_EXHAUSTED": {"resource": "seats", "requested": 12, "available": 10},
    "SERVICE_DEGRADATION": {"service": "api", "uptimePercent": 97.5, "since": "2026-11-01T09:00:00Z"},
}
"""What a template override is rendered against when saved: a plausible payload of each SYSTEM event."""


class _AnyField(dict[str, Any]):
    """A CUSTOM event's sample payload: its fields are not known in advance, so any field reads as a
    placeholder and only the top-level names of an override are checked when it is saved."""

    def __missing__(self, key: str) -> str:
        return f"<{key}>"


def sample_context(event_type: str, display_name: str | None = None) -> dict[str, Any]:
    """The context of a sample event of `event_type` (SYSTEM: its catalog entry and sample payload)."""
    system = SYSTEM_EVENTS.get(event_type)
    payload: dict[str, Any] = dict(SAMPLE_PAYLOADS.get(event_type, {})) if system is not None else _AnyField()
    severity = system.severity.value if system is not None else Severity.INFO.value
    category = system.category.value if system is not None else "Custom"
    occurred_at = "2026-11-01T09:00:00.000Z"
    event = {
        "eventId": "00000000-0000-4000-8000-000000000000",
        "eventType": event_type,
        "category": category,
        "severity": severity,
        "tenantId": "sample-tenant",
        "customerId": "sample-customer",
        "occurredAt": occurred_at,
        "payload": payload,
    }
    return {
        "event_type": event_type,
        "event_id": event["eventId"],
        "category": category,
        "severity": severity,
        "occurred_at": occurred_at,
        "tenant_id": event["tenantId"],
        "customer_id": event["customerId"],
        "display_name": display_name or event_type,
        "payload": payload,
        "event": event,
    }


def check_override(
    event_type: str, channel: Channel, override: TemplateParts, display_name: str | None = None
) -> RenderedContent:
    """Render an override (with the built-in parts it leaves out) against the sample event; the
    rendered sample, or TemplateRenderError naming the part and the undefined name or syntax error."""
    allowed = TEMPLATE_PARTS[channel]
    for name in ("subject", "text", "html"):
        if override.part(name) is not None and name not in allowed:
            raise TemplateRenderError(name, f"a {channel.value} template has only {', '.join(allowed)}")
    parts = effective_template(builtin_template(event_type, channel), override)
    return render(channel, parts, sample_context(event_type, display_name))
