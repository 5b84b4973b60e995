"""How many streams one process can really hold: each is a socket, so `max_connections` needs that
many file descriptors plus the process's own (Kafka, MongoDB, logs, the listening socket).

At start the gateway raises its soft `RLIMIT_NOFILE` to the hard limit (container runtimes often
start processes at 1,024 soft with a far higher hard limit), and when even the hard limit cannot hold
`max_connections` plus `RESERVED_DESCRIPTORS`, lowers `max_connections` to what fits and says so: a
full gateway then answers 503 to the next stream (the client tries another replica) instead of
failing `accept()` with EMFILE for every request, health checks included.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass
from typing import Final

RESERVED_DESCRIPTORS: Final = 256
"""Descriptors kept for everything but streams: broker and database connections, logs, the listener."""


@dataclass(frozen=True, slots=True)
class DescriptorBudget:
    soft_limit: int
    """The soft limit to set (the hard limit, when it is higher than the current soft one)."""
    max_connections: int
    """The streams that fit: the setting, or less when the limit cannot hold it."""
    lowered: bool


def descriptor_budget(max_connections: int, soft: int, hard: int) -> DescriptorBudget:
    """Pure: the soft limit to ask for and the stream cap that fits under it."""
    needed = max_connections + RESERVED_DESCRIPTORS
    if hard != resource.RLIM_INFINITY:
        target_soft = hard  # as far as allowed
    elif soft == resource.RLIM_INFINITY:
        target_soft = soft
    else:
        target_soft = max(soft, needed)  # no ceiling: ask for what the setting needs
    if target_soft != resource.RLIM_INFINITY and target_soft < needed:
        fitting = max(1, target_soft - RESERVED_DESCRIPTORS)
        return DescriptorBudget(target_soft, fitting, lowered=True)
    return DescriptorBudget(target_soft, max_connections, lowered=False)


def apply_descriptor_budget(max_connections: int) -> DescriptorBudget:
    """Raise this process's soft limit as far as allowed; return the stream cap that fits."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    budget = descriptor_budget(max_connections, soft, hard)
    if budget.soft_limit != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (budget.soft_limit, hard))
        except (ValueError, OSError):
            # Not allowed here: plan with the limit we have.
            budget = descriptor_budget(max_connections, soft, soft)
    return budget
