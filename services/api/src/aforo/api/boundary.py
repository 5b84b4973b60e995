"""The HTTP boundary: reading bodies and queries into models, and answering every failure as JSON.

Body problems, in the order they are checked: over `max_request_body_bytes` → 413; not
`application/json` → 415; not UTF-8 JSON (a BOM, NaN/Infinity, a duplicate key, nesting deeper than
`MAX_API_BODY_DEPTH`) → 400; a lone surrogate, or JSON of the wrong shape → 422 naming the field. Every error a
route raises, and aiohttp's own 404/405, leave as `{"error": {"code", "message", "field"?}}`;
MongoDB unreachable is 503 `mongodb_unavailable` (the broker's is `broker_unavailable`, raised by the
publisher), both with `Retry-After`; an unexpected exception is logged (without the body) and
answered 500.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, TypeVar

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import BaseModel, ValidationError
from pymongo.errors import ConnectionFailure

from aforo.api.problems import (
    ApiError,
    InvalidRequestError,
    PayloadTooLargeError,
    api_error_from,
    invalid_request_from,
)
from aforo.shared.http import DEPENDENCY_RETRY_AFTER_SECONDS, dependency_unavailable_response, error_response
from aforo.shared.logging import get_logger
from aforo.shared.request_json import RequestJsonError, check_json_content_type, parse_request_json
from aforo.shared.serde import MAX_PAYLOAD_DEPTH

log = get_logger(__name__)

Model = TypeVar("Model", bound=BaseModel)

MAX_API_BODY_DEPTH: Final = MAX_PAYLOAD_DEPTH + 1
"""An emit's body wraps its payload: the payload may nest as deep as the bridge accepts."""

_CODE_FOR_STATUS: Final[Mapping[int, str]] = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
}


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError("payload_too_large", f"the request body is over {limit} bytes")


async def read_json(request: web.Request, limit: int) -> object:
    """The body as JSON; 413 over `limit` (checked before reading when the length is declared), then
    `aforo.shared.request_json`'s checks: 415 not `application/json`, 400 not UTF-8 JSON, too deep
    or a duplicate key, 422 a lone surrogate.

    aiohttp's `client_max_size` is set to the same limit (`ApiService.max_request_body_bytes`), so a
    chunked body is cut off while it is read, not after.
    """
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    try:
        check_json_content_type(request.headers.get("Content-Type"))
    except RequestJsonError as error:
        raise api_error_from(error) from None
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(limit) from None
    if len(raw) > limit:
        raise _too_large(limit)
    try:
        return parse_request_json(raw, max_depth=MAX_API_BODY_DEPTH)
    except RequestJsonError as error:
        raise api_error_from(error) from None


async def read_body(request: web.Request, model: type[Model], limit: int) -> Model:
    """The body validated into `model`: 413, 400 or 422 as described above."""
    data = await read_json(request, limit)
    if not isinstance(data, dict):
        raise InvalidRequestError("validation_error", "the request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise invalid_request_from(error) from None


def read_query(request: web.Request, model: type[Model]) -> Model:
    """The query string validated into `model` (the last value of a repeated parameter counts)."""
    values = {key: request.query.getall(key)[-1] for key in request.query}
    try:
        return model.model_validate(values)
    except ValidationError as error:
        raise invalid_request_from(error) from None


EVENT_ID_HEADER: Final = "X-Aforo-Event-Id"


def accepted(event_id: str) -> web.Response:
    """202, no body; the id of what was sent in a header, so the caller can find its deliveries."""
    response = web.Response(status=202)
    response.headers[EVENT_ID_HEADER] = event_id
    return response


def problem_response(problem: ApiError) -> web.Response:
    response = error_response(problem.status, problem.code, problem.message, problem.field)
    if problem.status == 503:
        response.headers["Retry-After"] = str(DEPENDENCY_RETRY_AFTER_SECONDS)
    return response


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost: every failure leaves as the suite's JSON error."""
    try:
        return await handler(request)
    except ApiError as problem:
        return problem_response(problem)
    except web.HTTPException as exception:
        if exception.status < 400 or exception.content_type == "application/json":
            raise  # a redirect, or a refusal auth.py already shaped
        response = error_response(
            exception.status, _CODE_FOR_STATUS.get(exception.status, "http_error"), exception.reason
        )
        if "Allow" in exception.headers:
            response.headers["Allow"] = exception.headers["Allow"]
        return response
    except ConnectionFailure as error:
        # MongoDB is down or unreachable (server selection timed out): the request may be retried,
        # and the process stays up; pymongo reconnects by itself when the server is back.
        log.warning(
            "mongodb_unavailable", method=request.method, path=request.path, error=type(error).__name__
        )
        return dependency_unavailable_response("mongodb")
    except Exception:
        # The traceback, method and path only: the body may hold a secret or a customer's payload.
        log.exception("request_failed", method=request.method, path=request.path)
        return error_response(500, "internal_error", "the request failed; it has been logged")
