"""Requests on `<prefix>dispatch.requests`: deliver one envelope to one named webhook endpoint.

The API publishes them for a replay of a FAILED or SKIPPED delivery, for each delivery of an endpoint
recovery (both `kind: "replay"`, same eventId as the original, new attempts), and for the
`webhook.test` probe (`kind: "test"`). The dispatcher consumes them and delivers to `endpointId` only,
bypassing the endpoint's event filter; signing and retries are the same as for any delivery.
For `channel` EMAIL, SMS or PAGERDUTY, `endpointId` names a contact destination instead, and a test
request carries `notification.test` (`POST /api/v1/contact-destinations/{id}/test`).

Wire form (camelCase, keyed `tenantId:customerId` like every envelope):
`{"kind", "endpointId", "tenantId", "envelope": <EventEnvelope wire dict>, "requestedAt", "replayOf",
"channel"?}`; `channel` appears only on EMAIL/SMS/PAGERDUTY requests (absent means WEBHOOK).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator, model_validator

from aforo.shared.catalog import WEBHOOK_TEST_EVENT
from aforo.shared.channels import NOTIFICATION_TEST_EVENT
from aforo.shared.delivery import Channel
from aforo.shared.envelope import EventEnvelope, format_utc, parse_utc
from aforo.shared.serde import dumps_json, loads_json


class DispatchRequestKind(StrEnum):
    REPLAY = "replay"
    """Deliver a logged event again (a replay of one delivery, or one delivery of a recovery)."""
    TEST = "test"
    """The `webhook.test` probe of one endpoint, or `notification.test` of one contact destination."""


class DispatchRequest(BaseModel):
    """Deliver `envelope` to the endpoint `endpointId` of `tenantId`, and nowhere else."""

    model_config = ConfigDict(populate_by_name=True, frozen=True, extra="forbid", serialize_by_alias=True)

    kind: DispatchRequestKind
    channel: Channel = Channel.WEBHOOK
    endpoint_id: str = Field(
        alias="endpointId",
        min_length=1,
        max_length=128,
        description="The webhook endpoint, or for EMAIL/SMS/PAGERDUTY the contact destination.",
    )
    tenant_id: str = Field(alias="tenantId", min_length=1, max_length=128)
    envelope: EventEnvelope
    requested_at: datetime = Field(alias="requestedAt")
    replay_of: str | None = Field(
        default=None, alias="replayOf", min_length=1, description="The deliveryId a replay repeats."
    )

    @field_validator("requested_at", mode="before")
    @classmethod
    def _requested_at_utc(cls, value: Any) -> datetime:
        return parse_utc(value)

    @field_serializer("requested_at")
    def _requested_at_wire(self, value: datetime) -> str:
        return format_utc(value)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.envelope.tenant_id != self.tenant_id:
            raise ValueError("envelope.tenantId: must equal tenantId")
        probe = WEBHOOK_TEST_EVENT if self.channel is Channel.WEBHOOK else NOTIFICATION_TEST_EVENT
        if self.kind is DispatchRequestKind.TEST and self.envelope.event_type != probe:
            raise ValueError(f"envelope.eventType: a {self.channel.value} test request carries {probe}")
        if self.kind is DispatchRequestKind.TEST and self.replay_of is not None:
            raise ValueError("replayOf: a test request replays nothing")
        return self

    @property
    def key(self) -> bytes:
        """`tenantId:customerId`, the envelope's key: a customer's requests stay in one partition."""
        return self.envelope.partition_key

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "kind": self.kind.value,
            "endpointId": self.endpoint_id,
            "tenantId": self.tenant_id,
            "envelope": self.envelope.to_wire(),
            "requestedAt": format_utc(self.requested_at),
            "replayOf": self.replay_of,
        }
        if self.channel is not Channel.WEBHOOK:
            # Only channel requests carry it, so a webhook request reads the same as before channels.
            wire["channel"] = self.channel.value
        return wire

    def to_json_bytes(self) -> bytes:
        return dumps_json(self.to_wire())

    @classmethod
    def from_json_bytes(cls, raw: bytes) -> DispatchRequest:
        return cls.model_validate(loads_json(raw))
