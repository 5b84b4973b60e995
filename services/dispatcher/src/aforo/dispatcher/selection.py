"""Which of a customer's webhook endpoints one event is delivered to.

Endpoints belong to one (tenant, end customer). The selection re-checks that ownership on every
endpoint instead of trusting the caller's lookup, so a cache bug cannot post one customer's event
to another customer's receiver. Active endpoints whose `events` list the type (or "*") are chosen;
the customer's other endpoints are reported as skipped, with the gate that dropped them.
`webhook.test` goes to the one endpoint it was fired for, past its filter and even when inactive:
the user asked for exactly that probe. See docs/dispatch.md.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from aforo.dispatcher.retry_schedule import (
    DEFAULT_BACKOFF_MULTIPLIER,
    DEFAULT_INITIAL_BACKOFF_SECONDS,
    DEFAULT_MAX_RETRY_ATTEMPTS,
    RetryConfig,
)
from aforo.shared.catalog import WEBHOOK_TEST_EVENT
from aforo.shared.delivery import SkipReason
from aforo.shared.envelope import EventEnvelope
from aforo.shared.webhook_endpoints import ALL_EVENTS, WebhookEndpointDocument

WEBHOOK_TEST_TARGET_FIELD: Final = "endpointId"
"""The `webhook.test` envelope's payload names the endpoint the probe is for in this field."""


@dataclass(frozen=True)
class EndpointView:
    """The parts of a `webhook_endpoints` document that routing and retrying need (no secret)."""

    endpoint_id: str
    tenant_id: str
    end_customer_id: str
    url: str
    events: frozenset[str]
    active: bool
    max_retry_attempts: int = DEFAULT_MAX_RETRY_ATTEMPTS
    initial_backoff_seconds: float = DEFAULT_INITIAL_BACKOFF_SECONDS
    backoff_multiplier: float = DEFAULT_BACKOFF_MULTIPLIER

    def __post_init__(self) -> None:
        self.retry_config  # noqa: B018 - validate the retry settings when the view is built

    @functools.cached_property
    def retry_config(self) -> RetryConfig:
        """Built (and checked) once per view: a sender reads it for every attempt."""
        return RetryConfig(self.max_retry_attempts, self.initial_backoff_seconds, self.backoff_multiplier)

    def subscribes_to(self, event_type: str) -> bool:
        return event_type in self.events or ALL_EVENTS in self.events

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> EndpointView:
        """Read the document the API stored; raise ValueError (pydantic's) naming the bad field."""
        return cls.from_stored(WebhookEndpointDocument.from_document(document))

    @classmethod
    def from_stored(cls, stored: WebhookEndpointDocument) -> EndpointView:
        return cls(
            endpoint_id=stored.endpoint_id,
            tenant_id=stored.tenant_id,
            end_customer_id=stored.end_customer_id,
            url=stored.url,
            events=frozenset(stored.events),
            active=stored.active,
            max_retry_attempts=stored.max_retry_attempts,
            initial_backoff_seconds=stored.initial_backoff_seconds,
            backoff_multiplier=stored.backoff_multiplier,
        )


@dataclass(frozen=True)
class EndpointSkip:
    """One of the customer's endpoints the event does not go to, and the gate that dropped it."""

    endpoint: EndpointView
    reason: SkipReason


@dataclass(frozen=True)
class EndpointSelection:
    """The endpoints to deliver to, the customer's endpoints skipped, and what must be logged for ops.

    `foreign_endpoint_ids` are endpoints the caller passed that belong to another tenant or customer:
    never delivered to and never written to this customer's delivery log, but worth an operator log
    line (they mean a lookup bug). `missing_target_endpoint_id` is a `webhook.test` target that is
    not among the customer's endpoints (deleted since the test was fired, or someone else's).
    """

    deliver: tuple[EndpointView, ...]
    skipped: tuple[EndpointSkip, ...] = ()
    foreign_endpoint_ids: tuple[str, ...] = ()
    missing_target_endpoint_id: str | None = None


def webhook_test_target(envelope: EventEnvelope) -> str | None:
    """The endpoint a `webhook.test` envelope was fired for (payload `endpointId`), if it names one."""
    target = envelope.payload.get(WEBHOOK_TEST_TARGET_FIELD)
    return target if isinstance(target, str) and target else None


def select_endpoints(
    envelope: EventEnvelope,
    endpoints: Iterable[EndpointView],
    *,
    target_endpoint_id: str | None = None,
) -> EndpointSelection:
    """Choose the endpoints of the envelope's own (tenant, customer) that get this event.

    `target_endpoint_id` is required for `webhook.test` and refused for anything else (a targeted
    business event would bypass the customer's filters): both are ValueErrors naming the field.
    """
    is_test = envelope.event_type == WEBHOOK_TEST_EVENT
    if is_test and target_endpoint_id is None:
        raise ValueError(f"target_endpoint_id: required for {WEBHOOK_TEST_EVENT}")
    if not is_test and target_endpoint_id is not None:
        raise ValueError(f"target_endpoint_id: only {WEBHOOK_TEST_EVENT} is sent to a single endpoint")
    deliver: list[EndpointView] = []
    skipped: list[EndpointSkip] = []
    foreign: list[str] = []
    for endpoint in endpoints:
        if endpoint.tenant_id != envelope.tenant_id or endpoint.end_customer_id != envelope.customer_id:
            foreign.append(endpoint.endpoint_id)
        elif is_test:
            if endpoint.endpoint_id == target_endpoint_id:
                deliver.append(endpoint)
        elif not endpoint.active:
            skipped.append(EndpointSkip(endpoint, SkipReason.ENDPOINT_INACTIVE))
        elif not endpoint.subscribes_to(envelope.event_type):
            skipped.append(EndpointSkip(endpoint, SkipReason.ENDPOINT_FILTER))
        else:
            deliver.append(endpoint)
    if is_test:
        # Two documents with the same id would be a data bug; the probe still goes out once.
        deliver = deliver[:1]
    missing = target_endpoint_id if is_test and not deliver else None
    return EndpointSelection(tuple(deliver), tuple(skipped), tuple(foreign), missing)
