"""One integrator stack (every process real, the harness included) for all integrator tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.integrator.stack import IntegratorStack, integrator_stack
from tests.support.stack import LocalStack


@pytest_asyncio.fixture(scope="session")
async def stack(local_stack: LocalStack, service_log_dir: Path) -> AsyncIterator[IntegratorStack]:
    async with integrator_stack(local_stack, service_log_dir) as running:
        yield running


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "stack" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)
