"""One EMAIL/SMS/PAGERDUTY attempt from configuration to log row, minus the claim and the retry
parking the dispatcher does for every channel alike.

`render_content` renders the tenant's override, or the built-in template when the override does not
render this event (a payload without a field it names): the customer is still told, and the row
notes why the built-in was used. `channel_row` is the delivery-log row of a finished attempt, with
the destination, its masked address and the provider's reference.
"""

from __future__ import annotations

from datetime import datetime

from aforo.dispatcher.channels.configuration import DestinationRecord, ProviderRecord
from aforo.dispatcher.channels.delivery import ChannelDelivery, ChannelResult
from aforo.dispatcher.delivery_log import AttemptVerdict, DeliveryLogRow
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


def channel_row(
    envelope: EventEnvelope,
    destination: DestinationRecord,
    *,
    attempt: int,
    verdict: AttemptVerdict,
    result: ChannelResult,
    created_at: datetime,
    notes: list[str] | None = None,
) -> DeliveryLogRow:
    """The row of a finished attempt; `endpointId` is the destination's id (the row's unique key)."""
    noted = list(notes or [])
    if result.ambiguous:
        noted.append("ambiguous timeout: the provider may have sent it (SMS is retried at most once)")
    row = DeliveryLogRow.attempted(
        envelope,
        endpoint_id=destination.destination_id,
        attempt=attempt,
        verdict=verdict,
        created_at=created_at,
        response_status=result.response_status,
        response_body=None if result.response_body is None else result.response_body.encode(),
        error=result.error,
        duration_ms=result.duration_ms,
        channel=destination.document.channel,
    )
    return row.model_copy(
        update={
            "destination_id": destination.destination_id,
            "masked_address": destination.document.masked_address,
            "provider_reference": result.reference,
            "note": "; ".join(noted) or None,
        }
    )
