"""The OpenAPI contract, checked against the running API by schemathesis: for generated requests on
every operation (schema examples, boundary/coverage cases and random ones), no 5xx, and every
status code, content type, header and body is one the document declares. A second run puts issue
#11's edge values into the generated requests (lone surrogates, NUL and bidi characters, nesting
past the limit, integers past 64 bits, timestamps at the ends of the date range): still no 5xx,
and only documented answers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Final

import pytest
import pytest_asyncio
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy
from schemathesis.checks import not_a_server_error
from schemathesis.openapi import from_dict
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from aforo.api.openapi import openapi_document
from tests.support.api_harness import ApiUnderTest, start_api
from tests.support.stack import LocalStack

TENANT = "t-openapi"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api(local_stack: LocalStack, service_log_dir: Any) -> AsyncIterator[ApiUnderTest]:
    async with start_api(local_stack, service_log_dir) as running:
        # Something to find: a CUSTOM type, so emit and preference operations also reach their 2xx.
        reply = await running.call(
            "POST",
            "/api/v1/admin/event-definitions",
            tenant=TENANT,
            json={
                "eventType": "WHALE",
                "displayName": "Whale",
                "category": "Custom",
                "severity": "INFO",
                "defaultChannels": ["WEBHOOK"],
                "thresholdField": "amount",
            },
        )
        assert reply.status == 201
        yield running


@pytest.fixture(scope="module")
def http() -> Any:
    with requests.Session() as session:
        yield session


# The generated document, loaded at collection time (one test per operation); the last test shows
# the running API serves exactly this document.
schema = from_dict(openapi_document())


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_keeps_the_documented_contract(
    case: schemathesis.Case, api: ApiUnderTest, http: requests.Session
) -> None:
    customer = "c-openapi" if "customer" in (case.operation.tags or []) else None
    roles = ("CUSTOMER",) if customer else ("ADMIN",)
    case.call_and_validate(
        base_url=api.process.url, session=http, headers=api.headers(TENANT, roles, customer), checks=CHECKS
    )


def nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


EDGE_TEXT: Final = st.sampled_from(["\ud800", "a\udfffb", "\x00", "a\u202eb", "\u200b", "bücher.example"])
EDGE_VALUES: Final = st.one_of(
    EDGE_TEXT, st.just(nested(600)), st.just(2**70), st.just(-(2**70)), st.just({"\ud800": 1}), st.just({})
)
EDGE_TIMES: Final = st.sampled_from(
    [
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59.999999-14:00",
        "9999-12-31T23:59:59Z",
        "1969-12-31T23:59:59Z",
    ]
)
# A query string is UTF-8 bytes: a lone surrogate cannot be sent in one (the client refuses to).
EDGE_QUERY_TEXT: Final = st.sampled_from(["\x00", "a\u202eb", "\u200b", "x" * 5000])
TIME_PARAMETERS: Final = frozenset({"from", "to", "since", "until"})


def with_one_edge_value(value: Any, leaves: SearchStrategy[Any]) -> SearchStrategy[Any]:
    """`value` with one of its fields (at any depth) replaced by an edge value, or one edge key added."""
    if not isinstance(value, dict) or not value:
        return st.just(value)
    keys = sorted(value)
    replaced = st.tuples(st.sampled_from(keys), leaves).map(lambda pair: {**value, pair[0]: pair[1]})
    deeper = st.sampled_from(keys).flatmap(
        lambda key: with_one_edge_value(value[key], leaves).map(lambda inner: {**value, key: inner})
    )
    surrogate_key = st.just({**value, "\udc00": "x"})
    return st.one_of(replaced, deeper, surrogate_key)


def flatmap_body(context: Any, body: Any) -> SearchStrategy[Any]:
    return with_one_edge_value(body, EDGE_VALUES)


def flatmap_query(context: Any, query: Any) -> SearchStrategy[Any]:
    if not isinstance(query, dict) or not query:
        return st.just(query)
    return st.sampled_from(sorted(query)).flatmap(
        lambda key: (EDGE_TIMES if key in TIME_PARAMETERS else EDGE_QUERY_TEXT).map(
            lambda edge: {**query, key: edge}
        )
    )


@schema.hooks.apply(flatmap_query)
@schema.hooks.apply(flatmap_body)
@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_edge_values_get_documented_4xx_not_5xx(
    case: schemathesis.Case, api: ApiUnderTest, http: requests.Session
) -> None:
    customer = "c-openapi" if "customer" in (case.operation.tags or []) else None
    roles = ("CUSTOMER",) if customer else ("ADMIN",)
    case.call_and_validate(
        base_url=api.process.url, session=http, headers=api.headers(TENANT, roles, customer), checks=CHECKS
    )


async def test_the_served_document_is_the_generated_one(api: ApiUnderTest) -> None:
    async with api.session.get(f"{api.process.url}/openapi.json") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("application/json")
        assert await response.json() == openapi_document()
