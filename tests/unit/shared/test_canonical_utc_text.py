"""`canonical_utc_text` keeps wire-format text as it is and formats everything else: always the same
answer as `format_utc(parse_utc(value))`, or the same refusal."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aforo.shared.envelope import canonical_utc_text, format_utc, parse_utc

MOMENTS = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)).map(
    lambda moment: moment.replace(tzinfo=UTC)
)
# Text of the wire format's shape, digits anywhere (invalid dates and times included).
SHAPED = st.from_regex(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z\Z")


def expected(value: str | int | float) -> str | type[Exception]:
    try:
        return format_utc(parse_utc(value))
    except (ValueError, TypeError, OverflowError, OSError) as error:
        return type(error)


def actual(value: str | int | float) -> str | type[Exception]:
    try:
        return canonical_utc_text(value)
    except (ValueError, TypeError, OverflowError, OSError) as error:
        return type(error)


@given(MOMENTS)
def test_wire_format_text_is_kept_as_it_is(moment: datetime) -> None:
    text = format_utc(moment)
    assert canonical_utc_text(text) is text


@given(SHAPED)
def test_text_of_the_wire_shape_gives_what_parsing_and_formatting_give(text: str) -> None:
    assert actual(text) == expected(text)


@pytest.mark.parametrize(
    "value",
    [
        "2026-01-02T03:04:05+02:00",
        "2026-01-02T03:04:05.123456Z",
        "2026-01-02 03:04:05.123Z",
        "2026-02-30T00:00:00.000Z",
        "2026-01-01T24:00:00.000Z",
        "0000-01-01T00:00:00.000Z",
        "\uff12\uff10\uff12\uff16-01-01T00:00:00.000Z",  # fullwidth digits
        "2026-01-01T00:00:00.000",
        "yesterday",
        1_700_000_000_000,
        1.5e12,
    ],
)
def test_other_forms_are_parsed_and_formatted(value: str | int | float) -> None:
    assert actual(value) == expected(value)
