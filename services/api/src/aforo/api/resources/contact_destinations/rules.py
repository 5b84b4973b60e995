"""Where an end customer is reached on EMAIL, SMS or PAGERDUTY, and what a client sees of it.

An address is validated and normalised when it is registered (`aforo.shared.channels`): an e-mail
address (syntax only, no DNS), an E.164 phone number, or a PagerDuty routing key, which is a secret
(encrypted, write-only: views show `****` and its last four characters). The same address twice for
one customer and channel is a 409 (the unique index on `addressKey`). `events` filters like a
webhook endpoint's (`["*"]` by default).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Annotated, Any, Final, Literal

from pydantic import Field, field_validator

from aforo.api.event_subscribers import CustomerListQuery, SubscribedEvent, SubscriberUpdate
from aforo.api.problems import InvalidRequestError
from aforo.api.redelivery import probe_request
from aforo.api.wire import (
    CustomerId,
    RequestBody,
    ResponseBody,
    Timestamp,
    unique_in_order,
)
from aforo.shared.channels import (
    AddressError,
    ContactDestinationDocument,
    address_key,
    mask_address,
    normalise_address,
)
from aforo.shared.delivery import Channel
from aforo.shared.dispatch_requests import DispatchRequest
from aforo.shared.webhook_endpoints import ALL_EVENTS

TEST_MESSAGE: Final = "This is a test notification from aforo-notify."
DestinationChannel = Literal["EMAIL", "SMS", "PAGERDUTY"]
Label = Annotated[str, Field(min_length=1, max_length=100)]


class DestinationRegistration(RequestBody):
    """`POST /api/v1/contact-destinations`."""

    end_customer_id: CustomerId = Field(alias="endCustomerId")
    channel: DestinationChannel
    address: str = Field(
        min_length=1,
        max_length=320,
        description="An e-mail address, an E.164 phone number (+447911123123) or a 32-character "
        "PagerDuty routing key (write-only).",
    )
    events: list[SubscribedEvent] = Field(default_factory=lambda: [ALL_EVENTS], min_length=1, max_length=200)
    label: Label | None = None

    @field_validator("events")
    @classmethod
    def _events(cls, value: list[str]) -> list[str]:
        return unique_in_order(value)


class DestinationUpdate(SubscriberUpdate):
    """`PATCH /api/v1/contact-destinations/{destinationId}`: absent fields stay."""

    label: Label | None = None


class DestinationListQuery(CustomerListQuery):
    pass  # its own name in the OpenAPI document's schemas, like EndpointListQuery


class DestinationView(ResponseBody):
    """A destination as admins see it: the address for EMAIL and SMS, never a routing key."""

    destination_id: str = Field(alias="destinationId")
    end_customer_id: str = Field(alias="endCustomerId")
    channel: Channel
    address: str | None = Field(description="Null for PAGERDUTY: a routing key is write-only.")
    masked_address: str = Field(alias="maskedAddress")
    events: list[str]
    active: bool
    label: str | None
    version: int
    created_at: Timestamp = Field(alias="createdAt")
    updated_at: Timestamp = Field(alias="updatedAt")


class DestinationList(ResponseBody):
    items: list[DestinationView]


def new_destination_document(
    tenant_id: str,
    body: DestinationRegistration,
    *,
    destination_id: str,
    encrypt: Callable[[str], str],
    now: datetime,
) -> dict[str, Any]:
    """The `contact_destinations` document (the shape the dispatcher reads); 422 naming `address`."""
    channel = Channel(body.channel)
    try:
        normalised = normalise_address(channel, body.address.strip())
    except AddressError as error:
        raise InvalidRequestError("validation_error", str(error), "address") from None
    secret = channel is Channel.PAGERDUTY
    document = ContactDestinationDocument(
        tenant_id=tenant_id,
        destination_id=destination_id,
        end_customer_id=body.end_customer_id,
        channel=channel,
        address=None if secret else normalised,
        address_ciphertext=encrypt(normalised) if secret else None,
        address_key=address_key(tenant_id, body.end_customer_id, channel, normalised),
        masked_address=mask_address(channel, normalised),
        events=list(body.events),
        active=True,
        label=body.label,
        version=1,
        created_at=now,
        updated_at=now,
    )
    return document.to_document()


def destination_test_request(
    destination: Mapping[str, Any], *, event_id: str, now: datetime
) -> DispatchRequest:
    """`notification.test` for one destination, through the tenant's real provider."""
    destination_id = str(destination["destinationId"])
    return probe_request(
        destination,
        channel=Channel(destination["channel"]),
        target_id=destination_id,
        payload={"destinationId": destination_id, "message": TEST_MESSAGE},
        event_id=event_id,
        now=now,
    )


def destination_changes(body: DestinationUpdate) -> dict[str, Any]:
    """The stored fields a PATCH sets (without `version`/`updatedAt`); 422 when it sets none."""
    changes: dict[str, Any] = {}
    if body.active is not None:
        changes["active"] = body.active
    if body.events is not None:
        changes["events"] = list(body.events)
    if body.label is not None:
        changes["label"] = body.label
    if not changes:
        raise InvalidRequestError("validation_error", "the body names no field to change")
    return changes


def destination_view(document: Mapping[str, Any]) -> DestinationView:
    destination = ContactDestinationDocument.model_validate(document)
    return DestinationView(
        destination_id=destination.destination_id,
        end_customer_id=destination.end_customer_id,
        channel=destination.channel,
        address=destination.address,
        masked_address=destination.masked_address,
        events=destination.events,
        active=destination.active,
        label=destination.label,
        version=destination.version,
        created_at=destination.created_at,
        updated_at=destination.updated_at,
    )
