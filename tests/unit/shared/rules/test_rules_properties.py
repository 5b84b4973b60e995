"""Laws the rule engine keeps for any valid rule over any JSON payload."""

from __future__ import annotations

import math
from typing import Any

import re2
from hypothesis import given, settings
from hypothesis import strategies as st

from aforo.shared.rules import compile_trigger_rule, validate_trigger_rule
from aforo.shared.rules.safe_regex import compile_search

PROPERTIES = settings(max_examples=200, derandomize=True, deadline=None)

# Keys and fields drawn from one small vocabulary, so that generated fields usually resolve.
KEYS = st.sampled_from(["a", "b", "c", "0", "1", "lines", "amount"]) | st.text(max_size=3)
FIELDS = st.sampled_from(
    ["a", "b", "c", "0", "a.b", "a.0", "lines.0", "lines[1].amount", "a.b.c", "b[0][1]", "amount"]
)
PATTERNS = st.sampled_from(["^a", "b$", "(a+)+$", "(?i)AMOUNT", r"\d", "^$", "é|ü", "[[:alpha:]]{2}"])

# json.loads accepts NaN and Infinity and lone surrogate escapes, so payloads may hold them.
PAYLOAD_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=6)
    | st.sampled_from(["\ud800", "a\udfff", "é", "amount"])
)
PAYLOAD_VALUES = st.recursive(
    PAYLOAD_SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=4),
    max_leaves=12,
)
OBJECT_PAYLOADS = st.dictionaries(KEYS, PAYLOAD_VALUES, max_size=6)
ANY_PAYLOADS = OBJECT_PAYLOADS | PAYLOAD_VALUES

# Operands are what a saved rule may hold: finite numbers only.
OPERAND_SCALARS = (
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False, allow_infinity=False)
) | st.text(max_size=4)
OPERAND_VALUES = st.recursive(
    OPERAND_SCALARS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(KEYS, children, max_size=3),
    max_leaves=6,
)
ORDERING_OPERANDS = (
    st.integers(-5, 5) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=4)
)


def _leaf(op: str, values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(lambda field, value: {"field": field, "op": op, "value": value}, FIELDS, values)


LEAVES = st.one_of(
    _leaf("eq", OPERAND_VALUES),
    _leaf("ne", OPERAND_VALUES),
    _leaf("contains", OPERAND_VALUES),
    _leaf("in", st.lists(OPERAND_VALUES, max_size=4)),
    _leaf("not_in", st.lists(OPERAND_VALUES, max_size=4)),
    *(_leaf(op, ORDERING_OPERANDS) for op in ("gt", "gte", "lt", "lte")),
    _leaf("starts_with", st.text(max_size=3)),
    _leaf("ends_with", st.text(max_size=3)),
    _leaf("regex", PATTERNS),
    _leaf("exists", st.booleans()),
)


def _nodes(levels_left: int) -> st.SearchStrategy[dict[str, Any]]:
    """Valid rule nodes at most `levels_left` deep; three children per level keep them under 200 nodes."""
    if levels_left <= 1:
        return LEAVES
    children = _nodes(levels_left - 1)
    return st.one_of(
        LEAVES,
        st.builds(lambda items: {"all": items}, st.lists(children, max_size=3)),
        st.builds(lambda items: {"any": items}, st.lists(children, max_size=3)),
        st.builds(lambda child: {"not": child}, children),
    )


NODES = _nodes(4)


def evaluate(match: dict[str, Any], payload: Any) -> bool:
    return compile_trigger_rule({"sourceEvents": ["INVOICE_GENERATED"], "match": match}).matches(payload)


@PROPERTIES
@given(match=NODES)
def test_generated_rules_are_valid(match: dict[str, Any]) -> None:
    assert validate_trigger_rule({"sourceEvents": ["INVOICE_GENERATED"], "match": match}) == []


@PROPERTIES
@given(match=NODES, payload=ANY_PAYLOADS)
def test_evaluation_never_raises_and_returns_a_bool(match: dict[str, Any], payload: Any) -> None:
    assert type(evaluate(match, payload)) is bool


@PROPERTIES
@given(match=NODES, payload=OBJECT_PAYLOADS)
def test_not_inverts(match: dict[str, Any], payload: Any) -> None:
    assert evaluate({"not": match}, payload) is (not evaluate(match, payload))


@PROPERTIES
@given(children=st.lists(_nodes(3), max_size=5), payload=OBJECT_PAYLOADS)
def test_all_and_any_agree_with_python(children: list[dict[str, Any]], payload: Any) -> None:
    results = [evaluate(child, payload) for child in children]
    assert evaluate({"all": children}, payload) is all(results)
    assert evaluate({"any": children}, payload) is any(results)


@PROPERTIES
@given(field=FIELDS, value=OPERAND_VALUES, payload=OBJECT_PAYLOADS)
def test_ne_is_not_eq(field: str, value: Any, payload: Any) -> None:
    equal = evaluate({"field": field, "op": "eq", "value": value}, payload)
    assert evaluate({"field": field, "op": "ne", "value": value}, payload) is (not equal)


@PROPERTIES
@given(field=FIELDS, options=st.lists(OPERAND_VALUES, max_size=4), payload=OBJECT_PAYLOADS)
def test_in_is_any_eq_and_not_in_is_present_and_not_in(field: str, options: list[Any], payload: Any) -> None:
    member = evaluate({"field": field, "op": "in", "value": options}, payload)
    assert member is any(
        evaluate({"field": field, "op": "eq", "value": option}, payload) for option in options
    )
    present = evaluate({"field": field, "op": "exists", "value": True}, payload)
    assert evaluate({"field": field, "op": "not_in", "value": options}, payload) is (present and not member)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@PROPERTIES
@given(value=PAYLOAD_VALUES, bound=ORDERING_OPERANDS)
def test_orderings_compare_numbers_with_numbers_and_strings_with_strings(value: Any, bound: Any) -> None:
    comparable = (_is_number(value) and _is_number(bound)) or (
        isinstance(value, str) and isinstance(bound, str)
    )
    expected = {
        "gt": comparable and value > bound,
        "gte": comparable and value >= bound,
        "lt": comparable and value < bound,
        "lte": comparable and value <= bound,
    }
    actual = {op: evaluate({"field": "x", "op": op, "value": bound}, {"x": value}) for op in expected}
    assert actual == expected


@PROPERTIES
@given(pattern=PATTERNS, text=st.text(max_size=12) | st.sampled_from(["", "aaa", "amount 12", "\ud800a"]))
def test_regex_has_re2_search_semantics(pattern: str, text: str) -> None:
    expected = re2.search(pattern, text.encode("utf-8", "surrogatepass")) is not None
    assert compile_search(pattern)(text) is expected


def test_nan_payloads_never_compare() -> None:
    nan = math.nan
    for op in ("eq", "gt", "gte", "lt", "lte"):
        assert evaluate({"field": "a", "op": op, "value": 1}, {"a": nan}) is False
    assert evaluate({"field": "a", "op": "in", "value": [1, 2.5]}, {"a": nan}) is False
    assert evaluate({"field": "a", "op": "contains", "value": 1}, {"a": [nan]}) is False
