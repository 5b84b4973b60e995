"""The stream cap fits the process's file-descriptor limit (issue #14: 19,000 streams under a 20,000
hard limit; container runtimes often start far lower)."""

from __future__ import annotations

import resource

import pytest

from aforo.sse_gateway.descriptor_budget import RESERVED_DESCRIPTORS, descriptor_budget

INFINITY = resource.RLIM_INFINITY


@pytest.mark.parametrize(
    ("max_connections", "soft", "hard", "expected"),
    [
        # The soft limit is raised to the hard one, which holds the setting.
        (19_000, 1_024, 20_000, (20_000, 19_000, False)),
        # The hard limit cannot hold the setting plus the reserve: the cap is lowered to what fits.
        (20_000, 1_024, 20_000, (20_000, 20_000 - RESERVED_DESCRIPTORS, True)),
        (20_000, 1_024, 4_096, (4_096, 4_096 - RESERVED_DESCRIPTORS, True)),
        # No hard limit: ask for what the setting needs.
        (5_000, 1_024, INFINITY, (5_000 + RESERVED_DESCRIPTORS, 5_000, False)),
        (5_000, INFINITY, INFINITY, (INFINITY, 5_000, False)),
    ],
)
def test_descriptor_budget(
    max_connections: int, soft: int, hard: int, expected: tuple[int, int, bool]
) -> None:
    budget = descriptor_budget(max_connections, soft, hard)
    assert (budget.soft_limit, budget.max_connections, budget.lowered) == expected


def test_a_tiny_limit_still_allows_one_stream() -> None:
    assert descriptor_budget(100, 64, 64).max_connections == 1
