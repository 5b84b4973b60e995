"""The one way the API and the SSE gateway turn a request body into JSON, refusing what cannot be stored.

Checked in this order, each a 4xx with the suite's error shape (never a 500 from deep inside a
parser or a driver):

- `Content-Type` must be `application/json` (or a `+json` type), with no charset or `charset=utf-8`
  → 415 otherwise. A form or text body parsed as JSON would let a cross-site form post reach a route.
- The bytes must be UTF-8 without a byte order mark (RFC 8259 §8.1) → 400 `malformed_json`.
- Nesting deeper than `max_depth` (`MAX_BODY_DEPTH`, 64, unless the caller says otherwise) → 400
  `json_too_deep`, found by the suite's one nesting scan (`aforo.shared.serde.nesting_depth_exceeds`)
  *before* the parser runs, so a 100,000-level body never reaches Python's recursion limit.
- Not JSON, NaN/Infinity, or a key twice in one object → 400 (`malformed_json`, `duplicate_key`).
  Duplicates are refused rather than "last one wins": a filter that reads the first and a store
  that keeps the last is how a checked URL gets swapped for an unchecked one.
- A lone UTF-16 surrogate (`"\\ud800"`) in any key or string → 422 naming the field: no UTF-8 text,
  BSON document or Kafka record can carry one.

Messages never echo the body: it may hold a secret or a customer's payload.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator
from typing import Any, Final

from aforo.shared.serde import nesting_depth_exceeds

MAX_BODY_DEPTH: Final = 64
"""The deepest nesting of arrays and objects a request body may have by default (the body itself is
level 1). The API's bodies may carry an emitted payload, so it allows one level more than
`aforo.shared.serde.MAX_PAYLOAD_DEPTH`, what the bridge accepts from producers."""

_UTF8_BOM: Final = b"\xef\xbb\xbf"
_JSON_MEDIA_TYPE: Final = re.compile(r"^application/(?:[A-Za-z0-9.\-]+\+)?json$")
# Keys of this shape are field names a reader can be shown; anything else ends a reported path.
_FORBIDDEN_IN_IDENTIFIERS: Final = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_FORBIDDEN_IN_DISPLAY_TEXT: Final = frozenset({"Cc", "Cs", "Co", "Cn", "Zl", "Zp"})
_SHOWABLE_KEY: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,63}$")


class RequestJsonError(ValueError):
    """A body refused at the JSON boundary: the status and the JSON error a client sees."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field


def check_json_content_type(content_type: str | None) -> None:
    """415 unless the `Content-Type` header names JSON in UTF-8 (the only charset JSON has)."""
    if content_type is None or not content_type.strip():
        raise RequestJsonError(
            415, "unsupported_media_type", "the request body must be sent as Content-Type: application/json"
        )
    media_type, _, parameters = content_type.partition(";")
    if not _JSON_MEDIA_TYPE.match(media_type.strip().lower()):
        raise RequestJsonError(
            415, "unsupported_media_type", "the request body must be sent as Content-Type: application/json"
        )
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise RequestJsonError(
                415, "unsupported_media_type", "JSON request bodies must be UTF-8 (charset=utf-8)"
            )


class _DuplicateKeyError(ValueError):
    pass


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _DuplicateKeyError
    return result


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_DECODER: Final = json.JSONDecoder(
    object_pairs_hook=_object_without_duplicates,
    parse_constant=_refuse_constant,
)


def _is_utf8_text(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _child_path(path: str, key: str | int, showable: bool) -> tuple[str, bool]:
    """The path a reader is shown: keys that could be anything (a payload's) end it."""
    if not showable:
        return path, False
    if isinstance(key, int):
        return f"{path}[{key}]", True
    if not _SHOWABLE_KEY.match(key):
        return path, False
    return (f"{path}.{key}" if path else key), True


def _walk(value: Any) -> Iterator[tuple[str, Any]]:
    """Every key and string of a parsed document with its showable path, depth-first, no recursion."""
    stack: list[tuple[str, bool, Any]] = [("", True, value)]
    while stack:
        path, showable, node = stack.pop()
        if isinstance(node, str):
            yield path, node
        elif isinstance(node, dict):
            for key, child in node.items():
                child_path, child_showable = _child_path(path, key, showable)
                yield child_path, key
                stack.append((child_path, child_showable, child))
        elif isinstance(node, list):
            for index, child in enumerate(node):
                child_path, child_showable = _child_path(path, index, showable)
                stack.append((child_path, child_showable, child))


def first_unencodable_text(value: Any) -> str | None:
    """The path of the first key or string holding a lone surrogate ("" for the body), else None."""
    for path, text in _walk(value):
        if not _is_utf8_text(text):
            return path
    return None


def parse_request_json(raw: bytes, *, max_depth: int = MAX_BODY_DEPTH) -> Any:
    """The body's JSON value, or `RequestJsonError` as described in the module docstring."""
    if raw.startswith(_UTF8_BOM) or raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise RequestJsonError(
            400, "malformed_json", "the request body must be UTF-8 JSON without a byte order mark", "body"
        )
    try:
        text = raw.decode("utf-8", "strict")
    except UnicodeDecodeError:
        raise RequestJsonError(400, "malformed_json", "the request body is not valid UTF-8", "body") from None
    if not text.strip():
        raise RequestJsonError(400, "malformed_json", "the request body must be a JSON object", "body")
    if nesting_depth_exceeds(text, max_depth):
        raise RequestJsonError(
            400,
            "json_too_deep",
            f"the request body nests arrays and objects deeper than {max_depth} levels",
            "body",
        )
    try:
        value = _DECODER.decode(text)
    except _DuplicateKeyError:
        raise RequestJsonError(
            400, "duplicate_key", "a JSON object in the request body has the same key twice", "body"
        ) from None
    except (ValueError, RecursionError):
        raise RequestJsonError(400, "malformed_json", "the request body is not valid JSON", "body") from None
    path = first_unencodable_text(value)
    if path is not None:
        raise RequestJsonError(
            422,
            "validation_error",
            "text must not contain lone UTF-16 surrogates (\\ud800-\\udfff): they cannot be encoded as UTF-8",
            path or "body",
        )
    return value


def check_identifier_text(value: str) -> str:
    """Raise ValueError unless `value` is free of control and format characters.

    Identifiers (customer ids, event types, labels) end up in logs, URLs, admin screens and other
    systems' keys: a NUL truncates them in C code, a bidi override (U+202E) or a zero-width space
    (U+200B) makes two different ids look the same. Unicode categories Cc, Cf, Cs, Co, Cn, Zl, Zp.
    """
    for character in value:
        if unicodedata.category(character) in _FORBIDDEN_IN_IDENTIFIERS:
            raise ValueError(
                "must not contain control or format characters (NUL, bidi overrides, zero-width spaces)"
            )
    return value


_BIDI_CONTROLS: Final = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")


def check_display_text(value: str) -> str:
    """Raise ValueError if `value` (a name people read) holds control characters or bidi controls.

    Looser than `check_identifier_text`: a zero-width joiner belongs in an emoji sequence of a name,
    but nothing legitimate in a one-line name needs NUL, a line break or a right-to-left override.
    """
    for character in value:
        if character in _BIDI_CONTROLS or unicodedata.category(character) in _FORBIDDEN_IN_DISPLAY_TEXT:
            raise ValueError("must not contain control characters or bidi overrides")
    return value
