"""Each tenant's request rate, held to a token bucket so one tenant's burst cannot starve the others.

After authentication (the tenant is the token's): a request over the bucket gets 429 `rate_limited`
with `Retry-After`, counted in `aforo_api_rate_limited_total`. Health, metrics and the OpenAPI
document are never limited (they have no principal). Settings: `rate_limit_per_second` and
`rate_limit_burst` (docs/api.md); a rate of 0 turns the limit off.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from aforo.api.auth import PRINCIPAL_KEY
from aforo.shared.http import error_response
from aforo.shared.metrics import METRIC_PREFIX, Counter
from aforo.shared.rate_limit import TokenBuckets, retry_after_header

RATE_LIMITED = Counter(
    f"{METRIC_PREFIX}api_rate_limited_total",
    "API requests refused with 429 because their tenant's token bucket was empty.",
)


def tenant_rate_limit_middleware(
    buckets: TokenBuckets, clock: Callable[[], float] = time.monotonic
) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        principal = request.get(PRINCIPAL_KEY)
        if principal is not None:
            wait = buckets.take(principal.tenant_id, clock())
            if wait is not None:
                RATE_LIMITED.inc()
                response = error_response(
                    429,
                    "rate_limited",
                    "this tenant is over its request rate; retry after Retry-After seconds",
                )
                response.headers["Retry-After"] = retry_after_header(wait)
                return response
        return await handler(request)

    return middleware
