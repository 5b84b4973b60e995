"""The API's expected failures, as exceptions the pure modules raise and the error middleware answers.

Each carries the status and the `{"error": {"code", "message", "field"?}}` a client sees. Messages
never echo request values: a body may carry a webhook secret or a customer's payload.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from pydantic import ValidationError

from aforo.shared.request_json import RequestJsonError


class ApiError(Exception):
    """An expected refusal with the JSON error a client sees."""

    status: ClassVar[int] = 400

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


class MalformedRequestError(ApiError):
    """400: the body is not JSON at all (a schema problem is 422)."""

    status = 400


class NotFoundError(ApiError):
    """404: no such resource *for this tenant*; another tenant's resource looks exactly the same."""

    status = 404


class ConflictError(ApiError):
    """409: the request is well formed but clashes with what exists (a duplicate, a read-only row)."""

    status = 409


class PayloadTooLargeError(ApiError):
    """413: the body is over `max_request_body_bytes`."""

    status = 413


class UnsupportedMediaTypeError(ApiError):
    """415: the body is not sent as `application/json` in UTF-8."""

    status = 415


class InvalidRequestError(ApiError):
    """422: the body or query is JSON of the wrong shape or breaks a rule; `field` points at it."""

    status = 422


class UnavailableError(ApiError):
    """503: a dependency (the broker) did not acknowledge in time; the request may be retried."""

    status = 503


def field_path(location: Sequence[int | str]) -> str:
    """A pydantic error location as a reader writes it: `events[2]`, `triggerRule.match`."""
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else str(part)
    return path


def invalid_request_from(error: ValidationError, prefix: str = "") -> InvalidRequestError:
    """The first schema error as a 422; pydantic's message is kept, its `input` (the value) is not."""
    first = error.errors(include_url=False, include_input=False)[0]
    location = [part for part in first["loc"] if not (isinstance(part, str) and part.startswith("function-"))]
    path = field_path(location)
    if prefix:
        path = f"{prefix}.{path}" if path else prefix
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown field"
    elif first["type"] == "missing":
        message = "field required"
    return InvalidRequestError("validation_error", message, path or None)


def api_error_from(error: RequestJsonError) -> ApiError:
    """A refusal of the shared JSON boundary as the API's exception of the same status."""
    kind: type[ApiError] = {
        413: PayloadTooLargeError,
        415: UnsupportedMediaTypeError,
        422: InvalidRequestError,
    }.get(error.status, MalformedRequestError)
    return kind(error.code, error.message, error.field)
