"""What webhook endpoints and contact destinations share at the boundary: both receive a customer's
events through a filter (`events`, `"*"` for all), both can be switched off (`active`), and both are
listed one customer at a time."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StrictBool, field_validator

from aforo.api.wire import EVENT_TYPE_PATTERN, CustomerId, PartialUpdate, QueryParameters, unique_in_order

SubscribedEvent = Annotated[
    str,
    Field(
        pattern=f"^(\\*|{EVENT_TYPE_PATTERN.strip('^$')})$",
        max_length=128,
        description='An event type, or "*" for every event.',
    ),
]


class SubscriberUpdate(PartialUpdate):
    """The PATCH fields every subscriber has; each resource's update adds its own after them."""

    active: StrictBool | None = None
    events: list[SubscribedEvent] | None = Field(default=None, min_length=1, max_length=200)

    @field_validator("events")
    @classmethod
    def _events(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else unique_in_order(value)


class CustomerListQuery(QueryParameters):
    """`?endCustomerId=`: one customer's subscribers."""

    end_customer_id: CustomerId = Field(alias="endCustomerId")
