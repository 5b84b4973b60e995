"""Whether one more stream may open on this process, and with which refusal. Pure.

Caps keep one process's memory and file descriptors bounded: `max_connections` in all (a full
process answers 503 with Retry-After, so the load balancer's next pick, or a later retry, lands
elsewhere) and `max_connections_per_stream` per (tenant, customer) (429: one customer's tabs cannot
take a replica's capacity). A draining or not yet loaded process answers 503 as well.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Refusal(StrEnum):
    DRAINING = "draining"
    NOT_READY = "not_ready"
    PROCESS_FULL = "process_full"
    STREAM_FULL = "stream_full"


@dataclass(frozen=True, slots=True)
class Capacity:
    max_connections: int
    max_connections_per_stream: int


def admit(
    capacity: Capacity, *, open_total: int, open_for_stream: int, draining: bool, ready: bool
) -> Refusal | None:
    """None when the stream may open; else the first reason it may not."""
    if draining:
        return Refusal.DRAINING
    if not ready:
        return Refusal.NOT_READY
    if open_total >= capacity.max_connections:
        return Refusal.PROCESS_FULL
    if open_for_stream >= capacity.max_connections_per_stream:
        return Refusal.STREAM_FULL
    return None


REFUSAL_STATUS: dict[Refusal, int] = {
    Refusal.DRAINING: 503,
    Refusal.NOT_READY: 503,
    Refusal.PROCESS_FULL: 503,
    Refusal.STREAM_FULL: 429,
}
