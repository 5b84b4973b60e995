"""The one JSON encoding of the suite, used for Kafka values, webhook bodies and SSE data.

Compact and UTF-8 (non-ASCII kept as is). Python's json keeps big integers exact and floats
round-trip through `repr`, so a producer's payload survives decode/encode unchanged in value.
NaN and Infinity are refused on both sides: they are not JSON.

Valid JSON may hold a lone UTF-16 surrogate (`"\ud800"`), which Python decodes to a str that has
no UTF-8 form: such a value is encoded back with the escape, never refused. Nesting is limited to
`MAX_JSON_DEPTH` levels on decode, so that a hostile document is a ValueError, never a
RecursionError that depends on how deep the caller's own stack happens to be.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

MAX_JSON_DEPTH: Final = 512
"""The deepest nesting of arrays and objects any JSON the suite parses may have (an envelope or a
dispatch request wrapping a payload adds a level or two; producers' payloads get 500)."""

MAX_PAYLOAD_DEPTH: Final = 500
"""The deepest a producer's or an emitted payload may be: what the bridge and the API accept."""


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# Built once: json.dumps/json.loads with options build a new encoder/decoder on every call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_ASCII_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, allow_nan=False)
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)
_NESTING_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')

quote_json_string = json.encoder.encode_basestring
"""A str as a JSON string literal, exactly as `dumps_json` writes it (non-ASCII kept)."""


def dumps_json(value: Any) -> bytes:
    text = _ENCODER.encode(value)
    try:
        return text.encode()
    except UnicodeEncodeError:
        # A lone surrogate has no UTF-8 form: write every non-ASCII character as an escape instead
        # (the same JSON value, still valid UTF-8).
        return _ASCII_ENCODER.encode(value).encode()


def nesting_depth_exceeds(text: str, limit: int) -> bool:
    """Whether arrays/objects nest deeper than `limit` (brackets inside strings do not count).

    Cheap for ordinary documents: fewer opening brackets than the limit cannot nest deeper.
    """
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    for match in _NESTING_TOKENS.finditer(text):
        piece = match.group()
        if piece in "[{":
            depth += 1
            if depth > limit:
                return True
        elif piece in "]}":
            depth -= 1
    return False


def loads_json(raw: bytes | str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse JSON; raises ValueError (json.JSONDecodeError, UnicodeDecodeError, or nesting deeper than
    `max_depth`) on bad input.

    Bytes may be UTF-8, UTF-16 or UTF-32 (with or without a BOM), as `json.loads` accepts them.
    """
    text = raw if isinstance(raw, str) else raw.decode(json.detect_encoding(raw), "strict")
    if nesting_depth_exceeds(text, max_depth):
        raise ValueError(f"JSON nested deeper than {max_depth} levels")
    try:
        return _DECODER.decode(text)
    except RecursionError:
        raise ValueError(f"JSON nested too deeply to parse (limit {max_depth})") from None
