"""The gateway's HTTP boundary: request bodies, bearer tokens, and every failure answered as JSON.

Errors are the suite's `{"error": {"code", "message", "field"?}}` (`aforo.shared.http.error_response`).
Embed routes add CORS headers to an error only when the caller's origin is allowed by some active
embed key, so the SDK can read why it was refused while other origins learn nothing.
"""

from __future__ import annotations

from typing import Final, TypeVar
from urllib.parse import parse_qsl

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from pydantic import BaseModel, ValidationError
from pymongo.errors import ConnectionFailure, PyMongoError

from aforo.shared.embed import normalise_origin
from aforo.shared.http import dependency_unavailable_response, error_response
from aforo.shared.logging import get_logger
from aforo.shared.request_json import RequestJsonError, check_json_content_type, parse_request_json
from aforo.sse_gateway.cors import cors_headers
from aforo.sse_gateway.embed_store import EmbedStore
from aforo.sse_gateway.embed_tokens import EmbedAuthError

log = get_logger(__name__)

Model = TypeVar("Model", bound=BaseModel)

EMBED_PATH_PREFIX: Final = "/v1/embed/"
MAX_BODY_BYTES: Final = 16 * 1024
ORIGIN_NOT_ALLOWED: Final = "origin_not_allowed"
_NO_CORS_LOOKUP: Final = frozenset({ORIGIN_NOT_ALLOWED, "mongodb_unavailable"})
_CODE_FOR_STATUS: Final = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


async def read_body(request: web.Request, model: type[Model]) -> Model:
    """The JSON body validated into `model`: 413 over the limit, then the shared JSON boundary
    (`aforo.shared.request_json`: 415, 400, 422), then 422 the wrong shape."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise EmbedAuthError(413, "payload_too_large", f"the request body is over {MAX_BODY_BYTES} bytes")
    try:
        check_json_content_type(request.headers.get("Content-Type"))
        raw = await request.read()
        data = parse_request_json(raw)
    except web.HTTPRequestEntityTooLarge:
        raise EmbedAuthError(
            413, "payload_too_large", f"the request body is over {MAX_BODY_BYTES} bytes"
        ) from None
    except RequestJsonError as error:
        raise EmbedAuthError(error.status, error.code, error.message, error.field) from None
    if not isinstance(data, dict):
        raise EmbedAuthError(400, "malformed_json", "the request body must be a JSON object", "body")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        first = error.errors(include_url=False, include_input=False)[0]
        field = ".".join(str(part) for part in first["loc"]) or None
        message = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
        raise EmbedAuthError(422, "validation_error", message, field) from None


def query_value(request: web.Request, name: str) -> str | None:
    """The first value of a query parameter, read without `request.query`.

    Why: aiohttp keeps `request.query` (a parsed copy of the query string, here a session token of
    hundreds of bytes) cached on the request for as long as the handler runs, and a stream's handler
    runs for hours, tens of thousands of them per process. Parsed here, the copy is freed at once.
    """
    for key, value in parse_qsl(request.rel_url.raw_query_string, keep_blank_values=True):
        if key == name:
            return value
    return None


def bearer_token(request: web.Request, query_parameter: str | None = None) -> str:
    """`Authorization: Bearer <token>`, or (EventSource cannot set headers) the query parameter."""
    authorization = request.headers.get("Authorization")
    if authorization is not None and authorization.strip():
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip() and " " not in token.strip():
            return token.strip()
        raise EmbedAuthError(401, "missing_token", "the Authorization header must be 'Bearer <token>'")
    if query_parameter is not None:
        token = (query_value(request, query_parameter) or "").strip()
        if token:
            return token
    raise EmbedAuthError(401, "missing_token", "a session token is required")


def client_address(request: web.Request, header: str | None) -> str:
    """Who is calling, for per-address limits: the last entry of `header` (the address the nearest
    proxy saw; earlier entries are the client's own claims) or the TCP peer."""
    if header:
        forwarded = request.headers.get(header, "")
        last = forwarded.rsplit(",", 1)[-1].strip()
        if last:
            return last
    return request.remote or "unknown"


def origin_refusal() -> EmbedAuthError:
    """403 for an origin no embed key allows; `error_middleware` adds no CORS headers to it."""
    return EmbedAuthError(403, ORIGIN_NOT_ALLOWED, "this origin is not allowed by the embed key", "Origin")


def normalised_origin(request: web.Request) -> str | None:
    origin = request.headers.get("Origin")
    if origin is None:
        return None
    try:
        return normalise_origin(origin)
    except ValueError:
        return None


def error_middleware(store: EmbedStore) -> Middleware:
    """Outermost: EmbedAuthError, aiohttp's 404/405 and anything unexpected leave as JSON."""

    async def with_cors(request: web.Request, response: web.Response, code: str) -> web.Response:
        origin = normalised_origin(request)
        # With MongoDB down the origin lookup would wait out another server-selection timeout.
        if origin is not None and request.path.startswith(EMBED_PATH_PREFIX) and code not in _NO_CORS_LOOKUP:
            try:
                allowed = await store.origin_has_active_key(origin)
            except PyMongoError:  # the refusal itself matters more than its CORS headers
                allowed = False
            response.headers.update(cors_headers(origin, allowed))
        else:
            response.headers["Vary"] = "Origin"
        return response

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except EmbedAuthError as refusal:
            response = error_response(refusal.status, refusal.code, refusal.message, refusal.field)
            if refusal.status == 401:
                response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
            if refusal.status in (429, 503):
                response.headers["Retry-After"] = refusal.retry_after or "2"
            return await with_cors(request, response, refusal.code)
        except web.HTTPException as exception:
            if exception.status < 400:
                raise
            code = _CODE_FOR_STATUS.get(exception.status, "http_error")
            response = error_response(exception.status, code, exception.reason)
            if "Allow" in exception.headers:
                response.headers["Allow"] = exception.headers["Allow"]
            return await with_cors(request, response, code)
        except ConnectionFailure as error:
            # MongoDB is down: 503 (the SDK retries), never a 500; pymongo reconnects by itself.
            log.warning(
                "mongodb_unavailable", method=request.method, path=request.path, error=type(error).__name__
            )
            return await with_cors(request, dependency_unavailable_response("mongodb"), "mongodb_unavailable")
        except Exception:
            # Method and path only: a body or a query may carry a token.
            log.exception("request_failed", method=request.method, path=request.path)
            return error_response(500, "internal_error", "the request failed; it has been logged")

    return middleware
