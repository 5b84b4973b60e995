"""Session-wide fixtures: the real local stack (Kafka + SecantusDB) for integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.stack import ROOT, LocalStack


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def local_stack() -> Iterator[LocalStack]:
    """A real Kafka broker and SecantusDB, started once per session (or taken from the environment)."""
    existing = LocalStack.from_environment()
    if existing is not None:
        yield existing
        return
    stack = LocalStack.start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def service_log_dir() -> Path:
    path = ROOT / ".local" / "test-logs"
    path.mkdir(parents=True, exist_ok=True)
    return path
