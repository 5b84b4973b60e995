"""Template rendering: built-ins for every event and channel, overrides, the sandbox, escaping only in
HTML, header injection refused, length limits with an ellipsis."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aforo.shared.catalog import SYSTEM_EVENTS
from aforo.shared.delivery import Channel
from aforo.shared.envelope import EventEnvelope, Severity
from aforo.shared.templates import (
    ELLIPSIS,
    PAGERDUTY_SUMMARY_MAX_CHARACTERS,
    SMS_MAX_CHARACTERS,
    EmailContent,
    PagerDutyContent,
    SmsContent,
    TemplateParts,
    TemplateRenderError,
    builtin_template,
    check_override,
    effective_template,
    render,
    sample_context,
    template_context,
    truncated,
)
from tests.support.envelopes import make_envelope

CHANNELS = (Channel.EMAIL, Channel.SMS, Channel.PAGERDUTY)


def envelope(payload: dict[str, Any], severity: Severity = Severity.CRITICAL) -> EventEnvelope:
    return make_envelope(
        "PAYMENT_OVERDUE",
        event_id="0b5e6c1a-0000-4000-8000-000000000001",
        severity=severity,
        occurred_at=datetime(2026, 11, 1, 9, 0, tzinfo=UTC),
        payload=payload,
    )


@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize("event_type", [*SYSTEM_EVENTS, "A_CUSTOM_TYPE", "webhook.test", "notification.test"])
def test_every_builtin_renders_its_sample_and_an_empty_payload(event_type: str, channel: Channel) -> None:
    parts = builtin_template(event_type, channel)

    for payload in (sample_context(event_type)["payload"], {}):
        context = {**sample_context(event_type, "Custom name"), "payload": payload}
        rendered = render(channel, parts, context)
        if isinstance(rendered, EmailContent):
            assert rendered.subject
            assert "\n" not in rendered.subject
            assert rendered.text
            assert rendered.html.startswith("<html>")
        elif isinstance(rendered, SmsContent):
            assert 0 < len(rendered.body) <= SMS_MAX_CHARACTERS
        else:
            assert isinstance(rendered, PagerDutyContent)
            assert 0 < len(rendered.summary) <= PAGERDUTY_SUMMARY_MAX_CHARACTERS


@pytest.mark.parametrize(
    ("channel", "override", "expected"),
    [
        (
            Channel.EMAIL,
            TemplateParts(subject="Overdue: {{ payload.amountDue }} {{ payload.currency }}"),
            {"subject": "Overdue: 500 EUR"},
        ),
        (
            Channel.SMS,
            TemplateParts(text="{{ display_name }} {{ event_id[:8] }}"),
            {"body": "Payment overdue 0b5e6c1a"},
        ),
        (
            Channel.PAGERDUTY,
            TemplateParts(subject="{{ customer_id }}\nowes   {{ payload.amountDue }}"),
            {"summary": "c1 owes 500", "severity": "critical"},
        ),
        (
            Channel.EMAIL,
            TemplateParts(text="{{ payload.note }}", html="<p>{{ payload.note }}</p>"),
            {"text": "<script>alert(1)</script>", "html": "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>"},
        ),
    ],
    ids=["email-subject", "sms-body", "pagerduty-summary-one-line", "only-html-escapes"],
)
def test_overrides_render_the_event(
    channel: Channel, override: TemplateParts, expected: dict[str, str]
) -> None:
    event = envelope({"amountDue": 500, "currency": "EUR", "note": "<script>alert(1)</script>"})
    parts = effective_template(builtin_template(event.event_type, channel), override)

    rendered = render(channel, parts, template_context(event, "Payment overdue"))

    for name, value in expected.items():
        assert getattr(rendered, name) == value


@pytest.mark.parametrize(
    ("channel", "override", "part", "message"),
    [
        (Channel.EMAIL, TemplateParts(subject="{{ payload.nope }}"), "subject", "nope"),
        (Channel.EMAIL, TemplateParts(text="{{ nope }}"), "text", "'nope' is undefined"),
        (Channel.EMAIL, TemplateParts(html="{% for %}"), "html", "syntax error on line 1"),
        (Channel.EMAIL, TemplateParts(subject="a{{ '\\n' }}Bcc: x@example.com"), "subject", "line break"),
        (Channel.EMAIL, TemplateParts(subject="a\rb"), "subject", "line break"),
        (Channel.SMS, TemplateParts(text="{{ ''.__class__.__mro__ }}"), "text", "SecurityError"),
        (Channel.SMS, TemplateParts(text="{{ 1 / 0 }}"), "text", "ZeroDivisionError"),
        (Channel.SMS, TemplateParts(subject="x"), "subject", "has only text"),
        (Channel.PAGERDUTY, TemplateParts(html="x"), "html", "has only subject"),
    ],
)
def test_bad_overrides_name_the_part_and_the_problem(
    channel: Channel, override: TemplateParts, part: str, message: str
) -> None:
    with pytest.raises(TemplateRenderError) as problem:
        check_override("PAYMENT_OVERDUE", channel, override)

    assert problem.value.part == part
    assert message in problem.value.message


def test_long_sms_and_summaries_are_cut_with_an_ellipsis() -> None:
    event = envelope({"long": "x" * 5000})
    context = template_context(event)

    sms = render(Channel.SMS, TemplateParts(text="{{ payload.long }}"), context)
    summary = render(Channel.PAGERDUTY, TemplateParts(subject="{{ payload.long }}"), context)

    assert isinstance(sms, SmsContent)
    assert isinstance(summary, PagerDutyContent)
    assert (len(sms.body), sms.body[-1]) == (SMS_MAX_CHARACTERS, ELLIPSIS)
    assert (len(summary.summary), summary.summary[-1]) == (PAGERDUTY_SUMMARY_MAX_CHARACTERS, ELLIPSIS)


def test_pagerduty_custom_details_are_the_payload() -> None:
    payload = {"amountDue": 1, "lines": [{"sku": "a"}]}
    rendered = render(
        Channel.PAGERDUTY,
        builtin_template("PAYMENT_OVERDUE", Channel.PAGERDUTY),
        template_context(envelope(payload)),
    )

    assert isinstance(rendered, PagerDutyContent)
    assert rendered.custom_details == payload


@given(st.text(max_size=3000), st.integers(min_value=2, max_value=2000))
def test_truncation_never_exceeds_the_limit_and_keeps_short_text(text: str, limit: int) -> None:
    cut = truncated(text, limit)

    assert len(cut) <= limit
    if len(text) <= limit:
        assert cut == text
    else:
        assert cut.endswith(ELLIPSIS)
        assert text.startswith(cut[:-1])


@given(
    st.dictionaries(
        st.from_regex(r"[a-z]{1,8}", fullmatch=True), st.one_of(st.text(), st.integers()), max_size=8
    )
)
def test_builtin_templates_render_any_payload(payload: dict[str, Any]) -> None:
    for channel in CHANNELS:
        render(channel, builtin_template("INVOICE_GENERATED", channel), template_context(envelope(payload)))
