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


def dumps_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def loads_json(raw: bytes | str) -> Any:
    """Parse JSON; raises ValueError (json.JSONDecodeError or UnicodeDecodeError) on bad input."""
    return json.loads(raw, parse_constant=_refuse_constant)
