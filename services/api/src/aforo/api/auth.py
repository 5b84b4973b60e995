"""Who is calling and for which tenant: bearer-token verification, the principal, and role checks.

Production verifies Keycloak's RS256 tokens against its JWKS; local runs verify HS256 tokens signed
with a configured secret. The algorithm comes from configuration only, never from the token header,
so an HS256 token "signed" with the RSA public key (alg confusion) or an `alg: none` token fails.

Status codes (see docs/api-auth.md): a missing, malformed or unverifiable token is 401 with
`WWW-Authenticate: Bearer`; a valid token without an `X-Tenant-Id` header is 400; a valid token for
another tenant, or without the role a route needs, is 403; signing keys that cannot be fetched is 503.
Cross-tenant *resources* are 404, which is each route's job (it filters by `principal.tenant_id`).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

import aiohttp
import jwt
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from pydantic import SecretStr, ValidationError

from aforo.api.problems import ApiError
from aforo.api.settings import ApiSettings
from aforo.shared.http import error_response
from aforo.shared.logging import bind_event_context, get_logger
from aforo.shared.metrics import METRIC_PREFIX, Counter
from aforo.shared.request_json import check_identifier_text
from aforo.shared.serde import loads_json

ADMIN_ROLES = frozenset({"OWNER", "ADMIN", "BILLING_ADMIN"})
CUSTOMER_ROLE = "CUSTOMER"
TENANT_HEADER = "X-Tenant-Id"
DEFAULT_PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json"})
MIN_HS256_SECRET_BYTES = 32

AuthMode = Literal["hs256", "jwks"]
ALGORITHM_FOR_MODE: Mapping[AuthMode, str] = {"hs256": "HS256", "jwks": "RS256"}

_log = get_logger(__name__)

AUTH_REFUSALS = Counter(
    f"{METRIC_PREFIX}api_auth_refusals_total",
    "API requests refused by authentication or authorisation, by error code.",
    ["code"],
)


# --------------------------------------------------------------------------- configuration


class AuthConfigError(ValueError):
    """The auth settings cannot work (unknown mode, missing JWKS URL, short secret)."""


class AuthSettings(Protocol):
    """The settings fields auth reads (`ApiSettings` carries them)."""

    @property
    def auth_mode(self) -> str: ...
    @property
    def jwt_hs256_secret(self) -> SecretStr | str | None: ...
    @property
    def jwks_url(self) -> str | None: ...
    @property
    def jwt_issuer(self) -> str | None: ...
    @property
    def jwt_audience(self) -> str | None: ...
    @property
    def max_token_lifetime_seconds(self) -> float: ...


def _blank_to_none(value: str | None) -> str | None:
    """An empty environment variable means "not set"."""
    if value is None or not value.strip():
        return None
    return value.strip()


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """How tokens are verified; validated on construction so a bad setup fails at start, not per request."""

    mode: AuthMode
    hs256_secret: str | None = field(default=None, repr=False)
    jwks_url: str | None = None
    issuer: str | None = None
    audience: str | None = None
    leeway_seconds: int = 30
    jwks_cache_seconds: int = 300
    # The least time between two JWKS fetches, so a flood of unknown `kid`s cannot hammer Keycloak.
    jwks_min_refresh_seconds: float = 10.0
    # A stolen token is useful until its `exp`: one minted to last a century must not be accepted.
    max_token_lifetime_seconds: float = 86_400.0

    def __post_init__(self) -> None:
        if self.mode not in ALGORITHM_FOR_MODE:
            raise AuthConfigError(f"auth_mode (AFORO_API_AUTH_MODE): {self.mode!r} is not 'hs256' or 'jwks'")
        if self.mode == "hs256":
            if self.hs256_secret is None:
                raise AuthConfigError(
                    "jwt_hs256_secret (AFORO_API_JWT_HS256_SECRET) is required when auth_mode is hs256"
                )
            if len(self.hs256_secret.encode()) < MIN_HS256_SECRET_BYTES:
                raise AuthConfigError(
                    f"jwt_hs256_secret (AFORO_API_JWT_HS256_SECRET) must be at least "
                    f"{MIN_HS256_SECRET_BYTES} bytes"
                )
        if self.mode == "jwks" and not self.jwks_url:
            raise AuthConfigError("jwks_url (AFORO_API_JWKS_URL) is required when auth_mode is jwks")
        if self.leeway_seconds < 0:
            raise AuthConfigError("leeway_seconds must not be negative")
        if self.jwks_cache_seconds <= 0:
            raise AuthConfigError("jwks_cache_seconds must be positive")
        if self.jwks_min_refresh_seconds < 0:
            raise AuthConfigError("jwks_min_refresh_seconds must not be negative")
        if self.max_token_lifetime_seconds <= 0:
            raise AuthConfigError(
                "max_token_lifetime_seconds (AFORO_API_MAX_TOKEN_LIFETIME_SECONDS) must be positive"
            )

    @property
    def algorithm(self) -> str:
        """The one algorithm a token may use, fixed by the mode."""
        return ALGORITHM_FOR_MODE[self.mode]

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> AuthConfig:
        secret = settings.jwt_hs256_secret
        if isinstance(secret, SecretStr):
            secret = secret.get_secret_value()
        mode = settings.auth_mode.strip().lower()
        if mode not in ALGORITHM_FOR_MODE:
            raise AuthConfigError(
                f"auth_mode (AFORO_API_AUTH_MODE): {settings.auth_mode!r} is not 'hs256' or 'jwks'"
            )
        return cls(
            mode="hs256" if mode == "hs256" else "jwks",
            hs256_secret=secret or None,
            jwks_url=_blank_to_none(settings.jwks_url),
            issuer=_blank_to_none(settings.jwt_issuer),
            audience=_blank_to_none(settings.jwt_audience),
            max_token_lifetime_seconds=settings.max_token_lifetime_seconds,
        )

    @classmethod
    def from_env(cls) -> AuthConfig:
        """Read `AFORO_API_AUTH_MODE`, `AFORO_API_JWT_HS256_SECRET`, `AFORO_API_JWKS_URL`,
        `AFORO_API_JWT_ISSUER`, `AFORO_API_JWT_AUDIENCE` (each falling back to `AFORO_<NAME>`)."""
        try:
            settings = ApiSettings()
        except ValidationError as error:
            # Name the fields only: a validation message would echo the offending input values.
            fields = ", ".join(".".join(str(part) for part in item["loc"]) for item in error.errors())
            raise AuthConfigError(f"invalid API settings: {fields}") from None
        return cls.from_settings(settings)


# --------------------------------------------------------------------------- errors


class AuthError(ApiError):
    """An expected refusal of credentials or role; the API's one error shape (`ApiError`)."""

    status: ClassVar[int] = 401


class UnauthenticatedError(AuthError):
    """401: no usable credentials; the client must obtain a (new) token."""

    status = 401


class ForbiddenError(AuthError):
    """403: the token is valid but does not grant this request (tenant or role)."""

    status = 403


class TenantHeaderMissingError(AuthError):
    """400: the token is valid but the request does not name its tenant; a new token would not help."""

    status = 400

    def __init__(self) -> None:
        super().__init__("tenant_header_missing", f"the {TENANT_HEADER} header is required", TENANT_HEADER)


class SigningKeysUnavailableError(AuthError):
    """503: the JWKS could not be fetched and no keys are cached, so no token can be judged."""

    status = 503


def refusal_response(error: AuthError) -> web.Response:
    """The JSON error for a refusal; a 401 also says `WWW-Authenticate: Bearer` (RFC 6750)."""
    AUTH_REFUSALS.labels(code=error.code).inc()
    response = error_response(error.status, error.code, error.message, error.field)
    if error.status == 401:
        challenge = "Bearer" if error.code == "missing_token" else 'Bearer error="invalid_token"'
        response.headers["WWW-Authenticate"] = challenge
    return response


_HTTP_EXCEPTION_FOR_STATUS: Mapping[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest,
    401: web.HTTPUnauthorized,
    403: web.HTTPForbidden,
    503: web.HTTPServiceUnavailable,
}


def refusal_exception(error: AuthError) -> web.HTTPException:
    """The same refusal as an aiohttp exception, for handlers that must stop mid-way."""
    response = refusal_response(error)
    exception_class = _HTTP_EXCEPTION_FOR_STATUS[error.status]
    challenge = response.headers.get("WWW-Authenticate")
    headers = {"WWW-Authenticate": challenge} if challenge is not None else {}
    body = response.body
    assert isinstance(body, bytes)  # error_response always sends bytes
    # `text=`, not `body=`: aiohttp 3.14 deprecates a body on HTTP exceptions.
    return exception_class(headers=headers, text=body.decode(), content_type="application/json")


# --------------------------------------------------------------------------- the principal


@dataclass(frozen=True, slots=True)
class Principal:
    """The verified caller: a tenant, a subject, its roles and, for portal users, its end customer."""

    tenant_id: str
    subject: str
    roles: frozenset[str]
    customer_id: str | None

    @property
    def is_admin(self) -> bool:
        return not self.roles.isdisjoint(ADMIN_ROLES)

    @property
    def is_customer(self) -> bool:
        return CUSTOMER_ROLE in self.roles


def _string_list(value: object, claim: str) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise UnauthenticatedError("invalid_token", f"the {claim} claim must be a list of strings", claim)
    return frozenset(value)


def _optional_string(claims: Mapping[str, Any], claim: str) -> str | None:
    value = claims.get(claim)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise UnauthenticatedError("invalid_token", f"the {claim} claim must be a non-empty string", claim)
    try:
        check_identifier_text(value)
    except ValueError as error:
        raise UnauthenticatedError("invalid_token", f"the {claim} claim {error}", claim) from None
    return value


def principal_from_claims(claims: Mapping[str, Any]) -> Principal:
    """Verified claims → principal. Roles are the union of `roles` and Keycloak's `realm_access.roles`."""
    tenant_id = _optional_string(claims, "tenant_id")
    if tenant_id is None:
        raise UnauthenticatedError("invalid_token", "the token has no tenant_id claim", "tenant_id")
    subject = _optional_string(claims, "sub")
    if subject is None:
        raise UnauthenticatedError("invalid_token", "the token has no sub claim", "sub")
    roles: frozenset[str] = frozenset()
    if "roles" in claims:
        roles |= _string_list(claims["roles"], "roles")
    realm_access = claims.get("realm_access")
    if realm_access is not None:
        if not isinstance(realm_access, dict):
            raise UnauthenticatedError(
                "invalid_token", "the realm_access claim must be an object", "realm_access"
            )
        if "roles" in realm_access:
            roles |= _string_list(realm_access["roles"], "realm_access.roles")
    return Principal(
        tenant_id=tenant_id, subject=subject, roles=roles, customer_id=_optional_string(claims, "customer_id")
    )


# --------------------------------------------------------------------------- JWKS


def _usable_signing_keys(document: object) -> dict[str, jwt.PyJWK]:
    """RS256 signing keys by `kid`; encryption keys and other key types in the set are skipped."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("the JWKS document has no 'keys' list")
    keys: dict[str, jwt.PyJWK] = {}
    for entry in document["keys"]:
        if not isinstance(entry, dict):
            continue
        kid = entry.get("kid")
        if (
            not isinstance(kid, str)
            or not kid
            or entry.get("kty") != "RSA"
            or entry.get("use", "sig") != "sig"
            or entry.get("alg", "RS256") != "RS256"
        ):
            continue
        try:
            keys[kid] = jwt.PyJWK(entry, algorithm="RS256")
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError):
            _log.warning("jwks key skipped", kid=kid, reason="unparseable RSA key")
    return keys


class JwksKeySet:
    """Keycloak's public keys, fetched with aiohttp (never blocking the loop) and cached.

    Keys are kept for `cache_seconds`. A token with an unknown `kid` (a rotated key) triggers one
    refresh, but fetches are at least `min_refresh_seconds` apart, so a flood of made-up `kid`s
    costs Keycloak at most one request per interval. When a fetch fails, the cached keys stay in use.
    """

    def __init__(
        self,
        url: str,
        *,
        cache_seconds: float = 300.0,
        min_refresh_seconds: float = 10.0,
        timeout_seconds: float = 5.0,
        session: aiohttp.ClientSession | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = url
        self._cache_seconds = cache_seconds
        self._min_refresh_seconds = min_refresh_seconds
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session = session
        self._owns_session = session is None
        self._clock = clock
        self._lock = asyncio.Lock()
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._last_attempt_at: float | None = None

    async def key_for(self, kid: str) -> jwt.PyJWK:
        now = self._clock()
        if self._is_fresh(now) and kid in self._keys:
            return self._keys[kid]
        async with self._lock:
            # Another request may have refreshed while this one waited for the lock.
            now = self._clock()
            if not (self._is_fresh(now) and kid in self._keys) and self._may_fetch(now):
                await self._refresh(now)
            key = self._keys.get(kid)
            if key is not None:
                return key
            if self._fetched_at is None:
                raise SigningKeysUnavailableError("auth_unavailable", "the signing keys cannot be fetched")
            raise UnauthenticatedError("invalid_token", "the token is signed by an unknown key", "kid")

    def _is_fresh(self, now: float) -> bool:
        return self._fetched_at is not None and now - self._fetched_at < self._cache_seconds

    def _may_fetch(self, now: float) -> bool:
        return self._last_attempt_at is None or now - self._last_attempt_at >= self._min_refresh_seconds

    async def _refresh(self, now: float) -> None:
        self._last_attempt_at = now
        try:
            keys = await self._fetch()
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            _log.warning(
                "jwks fetch failed", url=self._url, error=type(error).__name__, cached_keys=len(self._keys)
            )
            return
        self._keys = keys
        self._fetched_at = now

    async def _fetch(self) -> dict[str, jwt.PyJWK]:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        async with self._session.get(self._url, timeout=self._timeout, allow_redirects=False) as response:
            if response.status != 200:
                raise ValueError(f"the JWKS endpoint answered {response.status}")
            return _usable_signing_keys(loads_json(await response.read()))

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None


# --------------------------------------------------------------------------- verification


class TokenVerifier(Protocol):
    """Anything that turns a bearer token into a principal or raises `AuthError`."""

    async def verify(self, token: str) -> Principal: ...


def _refusal_for(error: jwt.InvalidTokenError) -> UnauthenticatedError:
    """PyJWT's error → the code a client sees. Claim errors only follow a good signature."""
    if isinstance(error, jwt.ExpiredSignatureError):
        return UnauthenticatedError("token_expired", "the token has expired", "exp")
    if isinstance(error, jwt.ImmatureSignatureError):
        return UnauthenticatedError("token_not_yet_valid", "the token is not valid yet (nbf or iat ahead)")
    if isinstance(error, jwt.InvalidIssuerError):
        return UnauthenticatedError("invalid_issuer", "the token was issued by another issuer", "iss")
    if isinstance(error, jwt.InvalidAudienceError):
        return UnauthenticatedError("invalid_audience", "the token is meant for another audience", "aud")
    if isinstance(error, jwt.MissingRequiredClaimError):
        return UnauthenticatedError("invalid_token", f"the token has no {error.claim} claim", error.claim)
    if isinstance(error, jwt.InvalidSignatureError):
        return UnauthenticatedError("invalid_token", "the token signature does not verify")
    if isinstance(error, jwt.DecodeError):
        return UnauthenticatedError("malformed_token", "the token is not a well-formed JWT")
    return UnauthenticatedError("invalid_token", "the token is not valid")


def check_time_claims(
    claims: Mapping[str, Any], *, now: float, max_lifetime_seconds: float, leeway_seconds: float
) -> None:
    """`exp`, `iat`, `nbf` are JSON numbers (RFC 7519 NumericDate; PyJWT would take `"1e10"`-like
    strings), and the token lives at most `max_lifetime_seconds`: `exp - iat`, and `exp - now`."""
    for claim in ("exp", "iat", "nbf"):
        value = claims.get(claim)
        if claim in claims and (
            isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
        ):
            raise UnauthenticatedError(
                "invalid_token", f"the {claim} claim must be a number (seconds since the epoch)", claim
            )
    expires = float(claims["exp"])
    issued = claims.get("iat")
    too_long = expires - now > max_lifetime_seconds + leeway_seconds or (
        issued is not None and expires - float(issued) > max_lifetime_seconds
    )
    if too_long:
        raise UnauthenticatedError(
            "token_lifetime_too_long",
            f"the token lives longer than the {int(max_lifetime_seconds)} s this API accepts",
            "exp",
        )


class JwtVerifier:
    """Verifies bearer JWTs as configured: HS256 with the secret, or RS256 with Keycloak's JWKS."""

    def __init__(
        self,
        config: AuthConfig,
        *,
        key_set: JwksKeySet | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._clock = clock
        if config.mode == "jwks" and key_set is None:
            assert config.jwks_url is not None  # AuthConfig refuses jwks mode without a URL
            key_set = JwksKeySet(
                config.jwks_url,
                cache_seconds=config.jwks_cache_seconds,
                min_refresh_seconds=config.jwks_min_refresh_seconds,
            )
        self._key_set = key_set if config.mode == "jwks" else None

    async def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise UnauthenticatedError("malformed_token", "the token is not a well-formed JWT") from None
        if header.get("alg") != self._config.algorithm:
            # Checked before any key is chosen: the token never picks the algorithm.
            raise UnauthenticatedError(
                "invalid_token", f"the token must be signed with {self._config.algorithm}", "alg"
            )
        key = await self._verification_key(header)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[self._config.algorithm],
                issuer=self._config.issuer,
                audience=self._config.audience,
                leeway=self._config.leeway_seconds,
                options={
                    "require": ["exp", "sub"],
                    "verify_iss": self._config.issuer is not None,
                    # PyJWT refuses any token with `aud` when no audience is configured; unset means unchecked.
                    "verify_aud": self._config.audience is not None,
                },
            )
        except jwt.InvalidTokenError as error:
            raise _refusal_for(error) from None
        check_time_claims(
            claims,
            now=self._clock(),
            max_lifetime_seconds=self._config.max_token_lifetime_seconds,
            leeway_seconds=self._config.leeway_seconds,
        )
        return principal_from_claims(claims)

    async def _verification_key(self, header: Mapping[str, Any]) -> Any:
        if self._key_set is None:
            return self._config.hs256_secret
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise UnauthenticatedError("invalid_token", "the token header has no kid", "kid")
        return (await self._key_set.key_for(kid)).key

    async def close(self) -> None:
        if self._key_set is not None:
            await self._key_set.close()


# --------------------------------------------------------------------------- aiohttp glue

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
