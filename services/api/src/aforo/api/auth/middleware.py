"""The aiohttp glue: the middleware that authenticates every non-public request, and the role checks
routes call first.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from aforo.api.auth.config import DEFAULT_PUBLIC_PATHS, TENANT_HEADER
from aforo.api.auth.errors import (
    AuthError,
    ForbiddenError,
    TenantHeaderMissingError,
    UnauthenticatedError,
    refusal_exception,
    refusal_response,
)
from aforo.api.auth.principal import Principal
from aforo.api.auth.verification import TokenVerifier
from aforo.shared.logging import bind_event_context, get_logger

_log = get_logger(__name__)


PRINCIPAL_KEY: web.RequestKey[Principal] = web.RequestKey("principal", Principal)
"""Where the middleware leaves the principal (a typed key: aiohttp 3.14 warns on plain string keys)."""


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header (scheme case-insensitive, RFC 7235)."""
    if authorization is None or not authorization.strip():
        raise UnauthenticatedError("missing_token", "an Authorization: Bearer token is required")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise UnauthenticatedError("missing_token", "the Authorization header must be 'Bearer <token>'")
    return token


def check_tenant(principal: Principal, tenant_header: str | None) -> None:
    """The `X-Tenant-Id` header must name the token's tenant."""
    if tenant_header is None or not tenant_header.strip():
        raise TenantHeaderMissingError()
    if tenant_header.strip() != principal.tenant_id:
        raise ForbiddenError("tenant_mismatch", "the token is not valid for this tenant", TENANT_HEADER)


async def authenticate(verifier: TokenVerifier, request: web.Request) -> Principal:
    """Token first (401), then the tenant header (400, 403), so unauthenticated callers learn nothing."""
    principal = await verifier.verify(bearer_token(request.headers.get("Authorization")))
    check_tenant(principal, request.headers.get(TENANT_HEADER))
    return principal


def auth_middleware(
    verifier: TokenVerifier, public_paths: frozenset[str] = DEFAULT_PUBLIC_PATHS
) -> Middleware:
    """Every route but `public_paths` needs a verified principal, left in `request[PRINCIPAL_KEY]`."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in public_paths:
            return await handler(request)
        try:
            principal = await authenticate(verifier, request)
        except AuthError as error:
            _log.info("request refused", code=error.code, status=error.status, path=request.path)
            return refusal_response(error)
        request[PRINCIPAL_KEY] = principal
        with bind_event_context(tenant_id=principal.tenant_id):
            return await handler(request)

    return middleware


def principal_of(request: web.Request) -> Principal:
    """The request's principal; a route outside the middleware fails closed with 401."""
    principal: Principal | None = request.get(PRINCIPAL_KEY)
    if principal is None:
        raise refusal_exception(
            UnauthenticatedError("missing_token", "an Authorization: Bearer token is required")
        )
    return principal


def require_admin(request: web.Request) -> Principal:
    """Admin routes: role OWNER, ADMIN or BILLING_ADMIN, else 403."""
    principal = principal_of(request)
    if not principal.is_admin:
        raise refusal_exception(
            ForbiddenError(
                "insufficient_role", "this route needs role OWNER, ADMIN or BILLING_ADMIN", "roles"
            )
        )
    return principal


def require_customer(request: web.Request) -> Principal:
    """Portal routes: role CUSTOMER and a `customer_id` claim, else 403.

    The returned principal's `customer_id` is never None; routes take the customer from it, never
    from the request body.
    """
    principal = principal_of(request)
    if not principal.is_customer:
        raise refusal_exception(
            ForbiddenError("insufficient_role", "this route needs role CUSTOMER", "roles")
        )
    if principal.customer_id is None:
        raise refusal_exception(
            ForbiddenError("customer_id_missing", "the token has no customer_id claim", "customer_id")
        )
    return principal
