"""The OpenAPI contract, checked against the running API by schemathesis: for generated requests on
every operation (schema examples, boundary/coverage cases and random ones), no 5xx, and every
status code, content type, header and body is one the document declares."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.openapi import from_dict
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from aforo.api.openapi import openapi_document
from tests.integration.test_api_harness import ApiUnderTest, start_api
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


async def test_the_served_document_is_the_generated_one(api: ApiUnderTest) -> None:
    async with api.session.get(f"{api.process.url}/openapi.json") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("application/json")
        assert await response.json() == openapi_document()
