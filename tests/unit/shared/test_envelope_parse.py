"""`EventEnvelope.from_json_bytes` parses with pydantic's JSON parser where that gives the same envelope,
else the reference way (`model_validate(loads_json(raw))`): for any text, it must accept exactly what
the reference accepts, give the same envelope, and refuse the rest with the reference's error."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aforo.shared.envelope import EventEnvelope
from aforo.shared.serde import MAX_JSON_DEPTH, loads_json

HEAD = (
    b'{"eventId":"evt-1","eventType":"INVOICE_GENERATED","category":"billing","severity":"INFO",'
    b'"tenantId":"t1","customerId":"c1","occurredAt":"2026-11-23T09:00:00.250Z","payload":'
)


def envelope_text(payload: bytes) -> bytes:
    return HEAD + payload + b"}"


def reference(raw: bytes) -> EventEnvelope | tuple[str, str]:
    try:
        return EventEnvelope.model_validate(loads_json(raw))
    except (ValueError, TypeError) as error:
        return type(error).__name__, str(error)


def parsed(raw: bytes) -> EventEnvelope | tuple[str, str]:
    try:
        return EventEnvelope.from_json_bytes(raw)
    except (ValueError, TypeError) as error:
        return type(error).__name__, str(error)


def assert_same(raw: bytes) -> None:
    expected, got = reference(raw), parsed(raw)
    assert got == expected
    if isinstance(expected, EventEnvelope):
        assert isinstance(got, EventEnvelope)
        # == on floats says nothing of -0.0 against 0.0, nor of an int against an equal float.
        assert repr(got.payload) == repr(expected.payload)


JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**80), max_value=10**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300)
@given(payload=st.dictionaries(st.text(), JSON_VALUES, max_size=6), ascii_only=st.booleans())
def test_any_json_payload_parses_to_the_reference_envelope(payload: dict[str, Any], ascii_only: bool) -> None:
    # Escaped text (ensure_ascii) carries lone surrogates as `\ud800`, which only the reference accepts.
    text = json.dumps(payload, ensure_ascii=ascii_only)
    assert_same(envelope_text(text.encode("utf-8", "surrogatepass")))


@pytest.mark.parametrize(
    "payload",
    [
        b'{"a":NaN}',
        b'{"a":[-Infinity]}',
        b'{"a":Infinity}',
        b'{"NaN":"Infinity"}',  # the words inside strings: accepted
        b'{"a":"\\ud800"}',
        b'{"a":"\\ude00\\ud83d"}',
        b'{"a":1e400}',
        b'{"a":' + b"9" * 4300 + b"}",
        b'{"a":' + b"9" * 4301 + b"}",
        b'{"a":' + b"9" * 400 + b".5}",
        b'{"a":' + b"9" * 4400 + b".5}",
        b'{"a":-0,"b":-0.0,"c":1E2,"d":5e-324}',
        b'{"a":1,"a":2}',
        b'{"a":"x\ny"}',
        b'{"a":"\xff"}',
        b'{"a":01}',
        b'{"a":1} trailing',
        b'{"a":' + b"[" * (MAX_JSON_DEPTH - 2) + b"]" * (MAX_JSON_DEPTH - 2) + b"}",
        b'{"a":' + b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1) + b"}",
        b"[]",
        b'"payload"',
    ],
)
def test_hostile_and_edge_payloads_are_taken_or_refused_as_the_reference_does(payload: bytes) -> None:
    assert_same(envelope_text(payload))


@pytest.mark.parametrize(
    "raw",
    [
        b"\xef\xbb\xbf" + envelope_text(b"{}"),  # a UTF-8 byte-order mark
        envelope_text(b"{}").decode().encode("utf-16"),
        envelope_text(b"{}").replace(b'"evt-1"', b'"evt-1","eventId":"evt-2"'),
        envelope_text(b"{}").replace(b'"t1"', b'"t\\u0000"'),
        envelope_text(b"{}").replace(b'"INFO"', b'"LOUD"'),
        envelope_text(b"{}").replace(b'"2026-11-23T09:00:00.250Z"', b"1795424400250"),
        envelope_text(b"{}") + b"{}",
        b"",
    ],
)
def test_envelope_level_edges_are_taken_or_refused_as_the_reference_does(raw: bytes) -> None:
    assert_same(raw)


def test_constants_are_refused_even_where_the_fast_parser_takes_them() -> None:
    with pytest.raises(ValueError, match="NaN is not valid JSON"):
        EventEnvelope.from_json_bytes(envelope_text(b'{"a":NaN}'))
    floats = EventEnvelope.from_json_bytes(envelope_text(b'{"a":1e400}')).payload
    assert math.isinf(floats["a"])  # what Python's decoder makes of an out-of-range number, too
