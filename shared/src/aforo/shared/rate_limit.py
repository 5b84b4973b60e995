"""Token buckets per key (a tenant on the API, a client address on the gateway's session exchange).

A bucket holds up to `burst` tokens and gains `rate_per_second`; a request takes one, and when none
is left the answer is how long until one will be there (the `Retry-After` of the 429). Buckets live
in process memory, so with N replicas a key gets up to N times the rate: the limit protects each
process and MongoDB behind it from one noisy caller, it is not a billing quota. Pure (the caller
passes `now`), so tests need no clock.

`limits` (the usual Python library) offers fixed and moving windows only; a token bucket is the
shape the issue asks for (a burst, then a steady rate) and is a few lines, so it is written here.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

DEFAULT_MAX_KEYS: Final = 100_000
"""Buckets kept at most; the least recently used goes first (a full bucket is the same as none)."""


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated_at: float


class TokenBuckets:
    """One token bucket per key; `rate_per_second <= 0` turns limiting off."""

    def __init__(self, rate_per_second: float, burst: int, *, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        if burst < 1 and rate_per_second > 0:
            raise ValueError("burst must be at least 1 when a rate is set")
        self.rate_per_second = rate_per_second
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.rate_per_second > 0

    def take(self, key: str, now: float) -> float | None:
        """None when `key` may go ahead (one token taken); else the seconds until a token is back."""
        if not self.enabled:
            return None
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(tokens=float(self.burst), updated_at=now)
            self._buckets[key] = bucket
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            elapsed = max(0.0, now - bucket.updated_at)
            bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate_per_second)
            bucket.updated_at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) / self.rate_per_second

    def __len__(self) -> int:
        return len(self._buckets)


def retry_after_header(seconds: float) -> str:
    """`Retry-After` is whole seconds (RFC 9110); never 0, which would invite an immediate retry."""
    return str(max(1, int(-(-seconds // 1))))
