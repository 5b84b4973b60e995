"""Authentication and authorisation refusals, each answered as the JSON error shape (and counted)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from aiohttp import web

from aforo.api.auth.config import TENANT_HEADER
from aforo.api.problems import ApiError
from aforo.shared.http import error_response
from aforo.shared.metrics import METRIC_PREFIX, Counter

AUTH_REFUSALS = Counter(
    f"{METRIC_PREFIX}api_auth_refusals_total",
    "API requests refused by authentication or authorisation, by error code.",
    ["code"],
)


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
