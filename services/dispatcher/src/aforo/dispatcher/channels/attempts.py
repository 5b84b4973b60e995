"""What one EMAIL/SMS/PAGERDUTY attempt sends: its rendered content and the delivery built from it.

`render_content` renders the tenant's override, or the built-in template when the override does not
render this event (a payload without a field it names): the customer is still told, and the row
notes why the built-in was used.
"""

from __future__ import annotations

from aforo.dispatcher.channels.configuration import DestinationRecord, ProviderRecord
from aforo.dispatcher.channels.delivery import ChannelDelivery
from aforo.shared.delivery import Channel
from aforo.shared.envelope import EventEnvelope
from aforo.shared.templates import (
    RenderedContent,
    TemplateParts,
    TemplateRenderError,
    builtin_template,
    effective_template,
    render,
    template_context,
)


def render_content(
    envelope: EventEnvelope, channel: Channel, override: TemplateParts | None, display_name: str | None
) -> tuple[RenderedContent, str | None]:
    """The content of one delivery and, when the override could not be used, why."""
    builtin = builtin_template(envelope.event_type, channel)
    context = template_context(envelope, display_name)
    if override is not None:
        try:
            return render(channel, effective_template(builtin, override), context), None
        except TemplateRenderError as problem:
            return render(channel, builtin, context), f"template override not used ({problem}); built-in sent"
    return render(channel, builtin, context), None


def build_delivery(
    envelope: EventEnvelope,
    destination: DestinationRecord,
    provider: ProviderRecord,
    content: RenderedContent,
    *,
    attempt: int,
    ambiguous_attempts: int = 0,
) -> ChannelDelivery:
    return ChannelDelivery(
        envelope=envelope,
        content=content,
        destination_id=destination.destination_id,
        address=destination.address,
        provider=provider.document,
        secret=provider.secret,
        attempt=attempt,
        ambiguous_attempts=ambiguous_attempts,
    )
