"""Endpoint selection: filters, inactive endpoints, the test probe, and never another customer's endpoint."""

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aforo.dispatcher.retry_schedule import RetryConfig
from aforo.dispatcher.selection import (
    EndpointSelection,
    EndpointView,
    select_endpoints,
    webhook_test_target,
)
from aforo.shared.catalog import WEBHOOK_TEST_EVENT
from aforo.shared.delivery import SkipReason
from aforo.shared.envelope import EventEnvelope
from tests.support.envelopes import make_envelope

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def envelope(
    event_type: str = "INVOICE_GENERATED",
    tenant_id: str = "t1",
    customer_id: str = "c1",
    payload: dict[str, Any] | None = None,
) -> EventEnvelope:
    return make_envelope(
        event_type, event_id="evt-1", tenant=tenant_id, customer=customer_id, payload=payload, occurred_at=NOW
    )


def endpoint(
    endpoint_id: str, *events: str, active: bool = True, tenant_id: str = "t1", customer_id: str = "c1"
) -> EndpointView:
    return EndpointView(
        endpoint_id=endpoint_id,
        tenant_id=tenant_id,
        end_customer_id=customer_id,
        url=f"https://hooks.example.com/{endpoint_id}",
        events=frozenset(events),
        active=active,
    )


CUSTOMER_ENDPOINTS = (
    endpoint("subscribed", "INVOICE_GENERATED", "PAYMENT_OVERDUE"),
    endpoint("wildcard", "*"),
    endpoint("inactive", "INVOICE_GENERATED", active=False),
    endpoint("inactive-wildcard", "*", active=False),
    endpoint("filtered", "TRIAL_EXPIRED"),
    endpoint("no-events"),
    endpoint("same-tenant-other-customer", "*", customer_id="c2"),
    endpoint("other-tenant-same-customer-id", "*", tenant_id="t2"),
)


def summary(
    selection: EndpointSelection,
) -> tuple[list[str], list[tuple[str, SkipReason]], list[str], str | None]:
    return (
        [chosen.endpoint_id for chosen in selection.deliver],
        [(skip.endpoint.endpoint_id, skip.reason) for skip in selection.skipped],
        list(selection.foreign_endpoint_ids),
        selection.missing_target_endpoint_id,
    )


FOREIGN = ["same-tenant-other-customer", "other-tenant-same-customer-id"]
CUSTOMER_SKIPS_FOR_INVOICE = [
    ("inactive", SkipReason.ENDPOINT_INACTIVE),
    ("inactive-wildcard", SkipReason.ENDPOINT_INACTIVE),
    ("filtered", SkipReason.ENDPOINT_FILTER),
    ("no-events", SkipReason.ENDPOINT_FILTER),
]


@pytest.mark.parametrize(
    ("event", "target", "expected"),
    [
        pytest.param(
            envelope(),
            None,
            (["subscribed", "wildcard"], CUSTOMER_SKIPS_FOR_INVOICE, FOREIGN, None),
            id="business event",
        ),
        pytest.param(
            envelope("SUBSCRIPTION_ACTIVATED"),
            None,
            (
                ["wildcard"],
                [
                    ("subscribed", SkipReason.ENDPOINT_FILTER),
                    ("inactive", SkipReason.ENDPOINT_INACTIVE),
                    ("inactive-wildcard", SkipReason.ENDPOINT_INACTIVE),
                    ("filtered", SkipReason.ENDPOINT_FILTER),
                    ("no-events", SkipReason.ENDPOINT_FILTER),
                ],
                FOREIGN,
                None,
            ),
            id="only the wildcard subscribes",
        ),
        pytest.param(
            envelope(WEBHOOK_TEST_EVENT), "filtered", (["filtered"], [], FOREIGN, None), id="test: filter"
        ),
        pytest.param(
            envelope(WEBHOOK_TEST_EVENT), "inactive", (["inactive"], [], FOREIGN, None), id="test: inactive"
        ),
        pytest.param(
            envelope(WEBHOOK_TEST_EVENT),
            "same-tenant-other-customer",
            ([], [], FOREIGN, "same-tenant-other-customer"),
            id="test: another customer's endpoint is never a target",
        ),
        pytest.param(
            envelope(WEBHOOK_TEST_EVENT), "deleted", ([], [], FOREIGN, "deleted"), id="test: target gone"
        ),
        pytest.param(
            envelope(tenant_id="t3", customer_id="c9"),
            None,
            ([], [], [endpoint.endpoint_id for endpoint in CUSTOMER_ENDPOINTS], None),
            id="caller passed someone else's endpoints",
        ),
    ],
)
def test_selection(
    event: EventEnvelope,
    target: str | None,
    expected: tuple[list[str], list[tuple[str, SkipReason]], list[str], str | None],
) -> None:
    assert summary(select_endpoints(event, CUSTOMER_ENDPOINTS, target_endpoint_id=target)) == expected


def test_event_type_match_is_exact() -> None:
    endpoints = [endpoint("lower", "invoice_generated"), endpoint("prefix", "INVOICE")]
    selection = select_endpoints(envelope(), endpoints)
    assert selection.deliver == ()
    assert [skip.reason for skip in selection.skipped] == [SkipReason.ENDPOINT_FILTER] * 2


def test_webhook_test_is_sent_once_even_if_the_id_is_duplicated() -> None:
    twins = [endpoint("same", "*"), endpoint("same", "*")]
    assert len(select_endpoints(envelope(WEBHOOK_TEST_EVENT), twins, target_endpoint_id="same").deliver) == 1


def test_webhook_test_needs_a_target() -> None:
    with pytest.raises(ValueError, match="target_endpoint_id"):
        select_endpoints(envelope(WEBHOOK_TEST_EVENT), CUSTOMER_ENDPOINTS)


def test_business_event_cannot_be_targeted() -> None:
    with pytest.raises(ValueError, match="target_endpoint_id"):
        select_endpoints(envelope(), CUSTOMER_ENDPOINTS, target_endpoint_id="filtered")


@pytest.mark.parametrize(
    ("payload", "target"),
    [({"endpointId": "ep-1"}, "ep-1"), ({}, None), ({"endpointId": ""}, None), ({"endpointId": 5}, None)],
)
def test_webhook_test_target(payload: dict[str, Any], target: str | None) -> None:
    assert webhook_test_target(envelope(WEBHOOK_TEST_EVENT, payload=payload)) == target


def test_endpoint_from_document() -> None:
    document = {
        "_id": "ignored",
        "endpointId": "ep-1",
        "tenantId": "t1",
        "endCustomerId": "c1",
        "url": "https://hooks.example.com/a",
        "events": ["INVOICE_GENERATED", "*"],
        "active": False,
        "secret": "whsec_never_in_the_view",
        "maxRetryAttempts": 5,
        "initialBackoffSeconds": 1,
        "backoffMultiplier": 3,
    }
    view = EndpointView.from_document(document)
    assert view == EndpointView(
        "ep-1",
        "t1",
        "c1",
        "https://hooks.example.com/a",
        frozenset({"INVOICE_GENERATED", "*"}),
        False,
        5,
        1.0,
        3.0,
    )
    assert view.retry_config == RetryConfig(5, 1.0, 3.0)


def test_endpoint_from_document_defaults() -> None:
    document = {"endpointId": "e", "tenantId": "t", "endCustomerId": "c", "url": "https://x.example"}
    view = EndpointView.from_document(document)
    assert (view.events, view.active, view.retry_config) == (frozenset(), True, RetryConfig())


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"endpointId": ""}, "endpointId"),
        ({"tenantId": None}, "tenantId"),
        ({"endCustomerId": 7}, "endCustomerId"),
        ({"url": None}, "url"),
        ({"events": "INVOICE_GENERATED"}, "events"),
        ({"events": [1]}, "events"),
        ({"active": "yes"}, "active"),
        ({"maxRetryAttempts": 2.5}, "maxRetryAttempts"),
        ({"maxRetryAttempts": 0}, "maxRetryAttempts"),
        ({"initialBackoffSeconds": "2"}, "initialBackoffSeconds"),
        ({"initialBackoffSeconds": -1}, "initialBackoffSeconds"),
        ({"backoffMultiplier": True}, "backoffMultiplier"),
        ({"backoffMultiplier": 0}, "backoffMultiplier"),
    ],
)
def test_endpoint_from_document_names_the_bad_field(change: dict[str, Any], field: str) -> None:
    document = {
        "endpointId": "e",
        "tenantId": "t",
        "endCustomerId": "c",
        "url": "https://x.example",
        **change,
    }
    with pytest.raises(ValueError, match=f"^{field}:"):
        EndpointView.from_document(document)


IDS = st.sampled_from(["t1", "t2", "c1", "c2"])
EVENT_TYPES = st.sampled_from(["INVOICE_GENERATED", "TRIAL_EXPIRED", "ORDER_SPIKE", WEBHOOK_TEST_EVENT])
ENDPOINTS = st.lists(
    st.builds(
        EndpointView,
        endpoint_id=st.text(alphabet="abcdef", min_size=1, max_size=3),
        tenant_id=IDS,
        end_customer_id=IDS,
        url=st.just("https://hooks.example.com/"),
        events=st.frozensets(st.one_of(EVENT_TYPES, st.just("*")), max_size=3),
        active=st.booleans(),
    ),
    max_size=12,
)


@given(
    tenant_id=IDS,
    customer_id=IDS,
    event_type=EVENT_TYPES,
    endpoints=ENDPOINTS,
    target=st.text(alphabet="abcdef", min_size=1, max_size=3),
)
def test_never_crosses_customers(
    tenant_id: str, customer_id: str, event_type: str, endpoints: list[EndpointView], target: str
) -> None:
    event = envelope(event_type, tenant_id, customer_id)
    is_test = event_type == WEBHOOK_TEST_EVENT
    selection = select_endpoints(event, endpoints, target_endpoint_id=target if is_test else None)
    touched = [*selection.deliver, *(skip.endpoint for skip in selection.skipped)]
    assert all(chosen.tenant_id == tenant_id and chosen.end_customer_id == customer_id for chosen in touched)
    own = [e for e in endpoints if e.tenant_id == tenant_id and e.end_customer_id == customer_id]
    assert len(selection.foreign_endpoint_ids) == len(endpoints) - len(own)
    if is_test:
        assert [chosen.endpoint_id for chosen in selection.deliver] in ([], [target])
        assert selection.skipped == ()
        assert (selection.missing_target_endpoint_id is None) is any(e.endpoint_id == target for e in own)
    else:
        assert len(touched) == len(own)
        assert all(chosen.active and chosen.subscribes_to(event_type) for chosen in selection.deliver)
