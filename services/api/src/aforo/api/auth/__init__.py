"""Who is calling and for which tenant: bearer-token verification, the principal, and role checks.

Production verifies Keycloak's RS256 tokens against its JWKS; local runs verify HS256 tokens signed
with a configured secret. The algorithm comes from configuration only, never from the token header,
so an HS256 token "signed" with the RSA public key (alg confusion) or an `alg: none` token fails.

Status codes (see docs/api-auth.md): a missing, malformed or unverifiable token is 401 with
`WWW-Authenticate: Bearer`; a valid token without an `X-Tenant-Id` header is 400; a valid token for
another tenant, or without the role a route needs, is 403; signing keys that cannot be fetched is 503.
Cross-tenant *resources* are 404, which is each route's job (it filters by `principal.tenant_id`).

By concern: `config` (settings → `AuthConfig`), `errors` (refusals), `principal` (claims → caller),
`jwks` (the identity provider's keys), `verification` (`JwtVerifier`), `middleware` (aiohttp glue
and the role checks routes call). The names other modules use are re-exported here.
"""

from aforo.api.auth.config import (
    ADMIN_ROLES,
    ALGORITHM_FOR_MODE,
    CUSTOMER_ROLE,
    DEFAULT_PUBLIC_PATHS,
    MIN_HS256_SECRET_BYTES,
    TENANT_HEADER,
    AuthConfig,
    AuthConfigError,
    AuthMode,
    AuthSettings,
)
from aforo.api.auth.errors import (
    AUTH_REFUSALS,
    AuthError,
    ForbiddenError,
    SigningKeysUnavailableError,
    TenantHeaderMissingError,
    UnauthenticatedError,
    refusal_exception,
    refusal_response,
)
from aforo.api.auth.jwks import JwksKeySet
from aforo.api.auth.middleware import (
    PRINCIPAL_KEY,
    auth_middleware,
    authenticate,
    bearer_token,
    check_tenant,
    principal_of,
    require_admin,
    require_customer,
)
from aforo.api.auth.principal import Principal, principal_from_claims
from aforo.api.auth.verification import JwtVerifier, TokenVerifier, check_time_claims

__all__ = [
    "ADMIN_ROLES",
    "ALGORITHM_FOR_MODE",
    "AUTH_REFUSALS",
    "CUSTOMER_ROLE",
    "DEFAULT_PUBLIC_PATHS",
    "MIN_HS256_SECRET_BYTES",
    "PRINCIPAL_KEY",
    "TENANT_HEADER",
    "AuthConfig",
    "AuthConfigError",
    "AuthError",
    "AuthMode",
    "AuthSettings",
    "ForbiddenError",
    "JwksKeySet",
    "JwtVerifier",
    "Principal",
    "SigningKeysUnavailableError",
    "TenantHeaderMissingError",
    "TokenVerifier",
    "UnauthenticatedError",
    "auth_middleware",
    "authenticate",
    "bearer_token",
    "check_tenant",
    "check_time_claims",
    "principal_from_claims",
    "principal_of",
    "refusal_exception",
    "refusal_response",
    "require_admin",
    "require_customer",
]
