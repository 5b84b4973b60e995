"""A tenant's template overrides per (event type, channel), checked by rendering them when saved.

`PUT /api/v1/admin/templates/{eventType}/{channel}` `{subject?, text?, html?}`: the parts a channel
has (EMAIL subject/text/html, SMS text, PAGERDUTY subject = the incident summary) replace the
built-in ones; the rest stay built in. The override is rendered against a sample event of its type
(`aforo.shared.templates.check_override`): an undefined name, a syntax error, a sandbox refusal or a
subject with a line break is a 422 naming the template field. GET answers the override, or the
built-in template when there is none (`builtIn: true`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Final

from pydantic import Field

from aforo.api.problems import InvalidRequestError
from aforo.api.wire import RequestBody, ResponseBody, Timestamp
from aforo.shared.channels import TemplateOverrideDocument
from aforo.shared.delivery import Channel
from aforo.shared.templates import (
    MAX_TEMPLATE_CHARACTERS,
    EmailContent,
    PagerDutyContent,
    RenderedContent,
    SmsContent,
    TemplateParts,
    TemplateRenderError,
    builtin_template,
    check_override,
)

TemplateSource = Annotated[str, Field(min_length=1, max_length=MAX_TEMPLATE_CHARACTERS)]
PREVIEW_PARTS: Final = ("subject", "text", "html")


class TemplateOverrideBody(RequestBody):
    """The parts to override; at least one, and only those the channel has."""

    subject: TemplateSource | None = None
    text: TemplateSource | None = None
    html: TemplateSource | None = None


class TemplatePreview(ResponseBody):
    """The template rendered against the sample event of its type."""

    subject: str | None = None
    text: str | None = None
    html: str | None = None


class TemplateView(ResponseBody):
    event_type: str = Field(alias="eventType")
    channel: Channel
    built_in: bool = Field(alias="builtIn", description="True when the tenant has no override.")
    subject: str | None
    text: str | None
    html: str | None
    preview: TemplatePreview
    version: int = Field(description="0 for the built-in template.")
    updated_at: Timestamp | None = Field(alias="updatedAt")


def override_parts(body: TemplateOverrideBody) -> TemplateParts:
    parts = TemplateParts(subject=body.subject, text=body.text, html=body.html)
    if parts == TemplateParts():
        raise InvalidRequestError("validation_error", "give at least one of subject, text and html")
    return parts


def checked_preview(
    event_type: str, channel: Channel, parts: TemplateParts, display_name: str | None
) -> TemplatePreview:
    """The sample rendering of an override; 422 naming the template field that does not render."""
    try:
        rendered = check_override(event_type, channel, parts, display_name)
    except TemplateRenderError as problem:
        raise InvalidRequestError("template_invalid", problem.message, problem.part) from None
    return preview_of(rendered)


def preview_of(rendered: RenderedContent) -> TemplatePreview:
    if isinstance(rendered, EmailContent):
        return TemplatePreview(subject=rendered.subject, text=rendered.text, html=rendered.html)
    if isinstance(rendered, SmsContent):
        return TemplatePreview(text=rendered.body)
    assert isinstance(rendered, PagerDutyContent)
    return TemplatePreview(subject=rendered.summary)


def template_document(
    tenant_id: str,
    event_type: str,
    channel: Channel,
    parts: TemplateParts,
    *,
    current: Mapping[str, Any] | None,
    version: int,
    now: datetime,
) -> dict[str, Any]:
    return TemplateOverrideDocument(
        tenant_id=tenant_id,
        event_type=event_type,
        channel=channel,
        subject=parts.subject,
        text=parts.text,
        html=parts.html,
        version=version,
        created_at=(current or {}).get("createdAt", now),
        updated_at=now,
    ).to_document()


def template_view(
    event_type: str, channel: Channel, document: Mapping[str, Any] | None, preview: TemplatePreview
) -> TemplateView:
    if document is None:
        builtin = builtin_template(event_type, channel)
        return TemplateView(
            event_type=event_type,
            channel=channel,
            built_in=True,
            subject=builtin.subject,
            text=builtin.text,
            html=builtin.html,
            preview=preview,
            version=0,
            updated_at=None,
        )
    override = TemplateOverrideDocument.model_validate(document)
    return TemplateView(
        event_type=event_type,
        channel=channel,
        built_in=False,
        subject=override.subject,
        text=override.text,
        html=override.html,
        preview=preview,
        version=override.version,
        updated_at=override.updated_at,
    )
