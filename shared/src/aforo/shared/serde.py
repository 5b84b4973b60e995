"""The one JSON encoding of the suite, used for Kafka values, webhook bodies and SSE data.

Compact and UTF-8 (non-ASCII kept as is). Python's json keeps big integers exact and floats
round-trip through `repr`, so a producer's payload survives decode/encode unchanged in value.
NaN and Infinity are refused on both sides: they are not JSON.
"""

from __future__ import annotations

import json
from typing import Any


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# Built once: json.dumps/json.loads with options build a new encoder/decoder on every call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)

quote_json_string = json.encoder.encode_basestring
"""A str as a JSON string literal, exactly as `dumps_json` writes it (non-ASCII kept)."""


def dumps_json(value: Any) -> bytes:
    return _ENCODER.encode(value).encode()


def loads_json(raw: bytes | str) -> Any:
    """Parse JSON; raises ValueError (json.JSONDecodeError or UnicodeDecodeError) on bad input.

    Bytes may be UTF-8, UTF-16 or UTF-32 (with or without a BOM), as `json.loads` accepts them.
    """
    text = raw if isinstance(raw, str) else raw.decode(json.detect_encoding(raw), "strict")
    return _DECODER.decode(text)
