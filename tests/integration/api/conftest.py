"""One API process (real broker and SecantusDB) for the whole package, and readers of the topics it
writes; each test isolates itself with its own tenant, customer or event type."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio

from tests.support.api_harness import ApiUnderTest, start_api
from tests.support.kafka import TopicReader
from tests.support.stack import LocalStack


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def api(local_stack: LocalStack, service_log_dir: Any) -> AsyncIterator[ApiUnderTest]:
    async with start_api(local_stack, service_log_dir) as running:
        yield running


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def config_changes(api: ApiUnderTest) -> AsyncIterator[TopicReader]:
    async with api.reader(api.topics.config_changes) as reader:
        yield reader


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def custom_events(api: ApiUnderTest) -> AsyncIterator[TopicReader]:
    async with api.reader(api.topics.custom_events) as reader:
        yield reader


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def dispatch_requests(api: ApiUnderTest) -> AsyncIterator[TopicReader]:
    async with api.reader(api.topics.dispatch_requests) as reader:
        yield reader
