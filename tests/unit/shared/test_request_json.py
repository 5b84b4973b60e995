"""The shared JSON boundary of the API and the SSE gateway: what a hostile body gets back."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aforo.shared.request_json import (
    MAX_BODY_DEPTH,
    RequestJsonError,
    check_identifier_text,
    check_json_content_type,
    parse_request_json,
)
from aforo.shared.serde import nesting_depth_exceeds


def refusal(raw: bytes) -> tuple[int, str, str | None]:
    with pytest.raises(RequestJsonError) as caught:
        parse_request_json(raw)
    return caught.value.status, caught.value.code, caught.value.field


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"[" * 1000 + b"]" * 1000, (400, "json_too_deep", "body")),
        (b'{"a":' * 100_000, (400, "json_too_deep", "body")),
        (b"[" * (MAX_BODY_DEPTH + 1) + b"]" * (MAX_BODY_DEPTH + 1), (400, "json_too_deep", "body")),
        (b'{"url": "http://127.0.0.1:3001/a", "url": "http://10.0.0.1/b"}', (400, "duplicate_key", "body")),
        (b'{"a": {"b": 1, "b": 1}}', (400, "duplicate_key", "body")),
        (b'{"secret": "\\ud800"}', (422, "validation_error", "secret")),
        (b'{"payload": {"\\udfff": 1}}', (422, "validation_error", "payload")),
        (b'{"payload": {"<script>": "\\ud800"}}', (422, "validation_error", "payload")),
        (b'{"rule": {"all": [{"value": "x\\ud800y"}]}}', (422, "validation_error", "rule.all[0].value")),
        (b'"\\ud800"', (422, "validation_error", "body")),
        (b'\xef\xbb\xbf{"a": 1}', (400, "malformed_json", "body")),
        ('{"a": 1}'.encode("utf-16"), (400, "malformed_json", "body")),
        ('{"a": 1}'.encode("utf-16-le"), (400, "malformed_json", "body")),
        (b'{"a": "\xff"}', (400, "malformed_json", "body")),
        (b'{"a": NaN}', (400, "malformed_json", "body")),
        (b"   ", (400, "malformed_json", "body")),
        (b"{nope", (400, "malformed_json", "body")),
    ],
)
def test_hostile_bodies_are_refused_naming_the_field(
    raw: bytes, expected: tuple[int, str, str | None]
) -> None:
    assert refusal(raw) == expected


def test_messages_never_echo_the_body() -> None:
    for raw in (b'{"<script>x</script>": 1, "<script>x</script>": 2}', b'{"<script>x</script>": "\\ud800"}'):
        with pytest.raises(RequestJsonError) as caught:
            parse_request_json(raw)
        assert "script" not in caught.value.message
        assert "script" not in (caught.value.field or "")


def test_the_caller_sets_the_depth() -> None:
    raw = b"[" * 501 + b"]" * 501
    assert refusal(raw)[1] == "json_too_deep"
    assert parse_request_json(raw, max_depth=501) is not None
    with pytest.raises(RequestJsonError):
        parse_request_json(b"[" + raw + b"]", max_depth=501)


def test_what_is_json_passes_unchanged() -> None:
    raw = '{"a": [1, 2.5, -3e300, 1180591620717411303424], "é": "😀 \\ud83d\\ude00", "n": null}'.encode()
    assert parse_request_json(raw) == json.loads(raw)
    nested = b"[" * MAX_BODY_DEPTH + b"]" * MAX_BODY_DEPTH
    assert parse_request_json(nested) == json.loads(nested)


def test_brackets_inside_strings_do_not_count_as_depth() -> None:
    raw = b'{"a": "' + b"[{" * 500 + b'\\"[[[", "b": ["]]]]"]}'
    assert not nesting_depth_exceeds(raw.decode(), 2)
    assert parse_request_json(raw)["b"] == ["]]]]"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=30,
)


@given(json_values)
def test_any_utf8_json_document_round_trips(value: Any) -> None:
    raw = json.dumps(value, ensure_ascii=False).encode()
    if nesting_depth_exceeds(raw.decode(), MAX_BODY_DEPTH):
        return
    assert parse_request_json(raw) == value


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON;charset=UTF-8",
        "application/merge-patch+json",
    ],
)
def test_json_content_types_pass(content_type: str) -> None:
    check_json_content_type(content_type)


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "",
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/xml",
        "multipart/form-data; boundary=x",
        "application/json; charset=utf-16",
        "application/jsonp",
        "text/json",
    ],
)
def test_other_content_types_are_415(content_type: str | None) -> None:
    with pytest.raises(RequestJsonError) as caught:
        check_json_content_type(content_type)
    assert (caught.value.status, caught.value.code) == (415, "unsupported_media_type")


@pytest.mark.parametrize(
    "text", ["a\x00b", "a\u202eb", "a\u200bb", "a\u2066b", "a\ufeffb", "a\nb", "a\x7fb", "a\u2028b"]
)
def test_identifiers_refuse_control_and_format_characters(text: str) -> None:
    with pytest.raises(ValueError, match="control or format"):
        check_identifier_text(text)


@pytest.mark.parametrize("text", ["cus_123", "Zoë Café", "客户-42", "a b", "a.b:c/d"])
def test_identifiers_keep_printable_text(text: str) -> None:
    assert check_identifier_text(text) == text
