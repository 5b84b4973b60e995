"""What a compiled trigger rule decides for each operator, composite and edge case of the language."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from aforo.shared.rules import CompiledRule, compile_trigger_rule

PAYLOAD: dict[str, Any] = {
    "amount": 100,
    "price": 9.5,
    "one": 1,
    "zero": 0,
    "flag": True,
    "off": False,
    "nothing": None,
    "name": "Acme Corp",
    "empty": "",
    "currency": "USD",
    "dueDate": "2024-06-01T00:00:00Z",
    "tags": ["vip", "eu", 1, True, None, {"k": 1}, [1, 2]],
    "bools": [True, False],
    "customer": {"tier": "gold", "address": {"country": "DE"}},
    "lines": [{"amount": 10, "sku": "A-1"}, {"amount": 20.5, "sku": "B-2"}],
    "matrix": [[1, 2], [3]],
    "obj": {"a": 1, "b": [1, 2]},
    "0": "top-level key zero",
    "numbered": {"0": "object key zero"},
}


def evaluate(match: dict[str, Any], payload: Any = PAYLOAD) -> bool:
    return compile_trigger_rule({"sourceEvents": ["INVOICE_GENERATED"], "match": match}).matches(payload)


def leaf(field: str, op: str, value: Any) -> dict[str, Any]:
    return {"field": field, "op": op, "value": value}


LEAF_CASES = [
    # eq: numbers by value, bools are not numbers, structures compared structurally.
    ("amount", "eq", 100, True),
    ("amount", "eq", 100.0, True),
    ("price", "eq", 9.5, True),
    ("amount", "eq", "100", False),
    ("name", "eq", "Acme Corp", True),
    ("name", "eq", "acme corp", False),
    ("flag", "eq", True, True),
    ("flag", "eq", 1, False),
    ("one", "eq", True, False),
    ("zero", "eq", False, False),
    ("off", "eq", 0, False),
    ("nothing", "eq", None, True),
    ("zero", "eq", None, False),
    ("missing", "eq", None, False),
    ("obj", "eq", {"a": 1.0, "b": [1, 2.0]}, True),
    ("obj", "eq", {"b": [1, 2], "a": 1}, True),
    ("obj", "eq", {"a": True, "b": [1, 2]}, False),
    ("obj", "eq", {"a": 1}, False),
    ("obj", "eq", {"a": 1, "b": [1, 2], "c": None}, False),
    ("obj.b", "eq", [1, 2], True),
    ("obj.b", "eq", [2, 1], False),
    ("obj.b", "eq", [1, 2, 3], False),
    ("obj.b", "eq", [True, 2], False),
    ("lines.0", "eq", {"amount": 10, "sku": "A-1"}, True),
    ("name", "eq", ["Acme Corp"], False),
    # ne is exactly `not eq`: another type or a missing field is "not equal".
    ("amount", "ne", 100, False),
    ("amount", "ne", 101, True),
    ("amount", "ne", 100.0, False),
    ("amount", "ne", "100", True),
    ("flag", "ne", 1, True),
    ("nothing", "ne", None, False),
    ("obj", "ne", {"a": 1, "b": [1, 2]}, False),
    ("name", "ne", "Acme Corp", False),
    # gt/gte/lt/lte: number vs number, string vs string (code point order), anything else False.
    ("amount", "gt", 99, True),
    ("amount", "gt", 100, False),
    ("amount", "gte", 100.0, True),
    ("amount", "lt", 100.5, True),
    ("price", "lt", 10, True),
    ("price", "lte", 9.5, True),
    ("price", "gt", 9.5, False),
    ("name", "gt", 1, False),
    ("amount", "gt", "1", False),
    ("amount", "lt", "999", False),
    ("flag", "gt", 0, False),
    ("off", "lt", 1, False),
    ("nothing", "gt", -1, False),
    ("obj", "gt", 0, False),
    ("tags", "lt", 5, False),
    ("dueDate", "gte", "2024-06-01", True),
    ("dueDate", "lt", "2024-05-31", False),
    ("dueDate", "gt", "2024-06-01", True),
    ("dueDate", "lte", "2024-12-31T23:59:59Z", True),
    ("name", "gt", "Acme", True),
    ("name", "lt", "acme", True),
    # in / not_in: membership by the eq rule.
    ("currency", "in", ["USD", "EUR"], True),
    ("currency", "in", ["usd"], False),
    ("currency", "in", [], False),
    ("amount", "in", [100.0, 5], True),
    ("amount", "in", ["100"], False),
    ("flag", "in", [1], False),
    ("one", "in", [True], False),
    ("flag", "in", [True], True),
    ("off", "in", [0, None], False),
    ("nothing", "in", [None], True),
    ("obj", "in", [{"a": 1, "b": [1, 2]}], True),
    ("obj", "in", ["obj", 1], False),
    ("lines.1.amount", "in", [20.5], True),
    ("currency", "not_in", ["JPY", "KRW"], True),
    ("currency", "not_in", ["USD"], False),
    ("currency", "not_in", [], True),
    ("amount", "not_in", ["100"], True),
    ("flag", "not_in", [1], True),
    ("nothing", "not_in", [None], False),
    # contains: substring of a string, or element (by the eq rule) of an array; objects are not searched.
    ("name", "contains", "Corp", True),
    ("name", "contains", "corp", False),
    ("name", "contains", "", True),
    ("tags", "contains", "vip", True),
    ("tags", "contains", "v", False),
    ("tags", "contains", 1, True),
    ("tags", "contains", 1.0, True),
    ("tags", "contains", True, True),
    ("tags", "contains", None, True),
    ("tags", "contains", {"k": 1.0}, True),
    ("tags", "contains", [1, 2], True),
    ("tags", "contains", [2, 1], False),
    ("bools", "contains", 1, False),
    ("obj", "contains", "a", False),
    ("amount", "contains", 1, False),
    ("name", "contains", 1, False),
    # starts_with / ends_with: strings only.
    ("name", "starts_with", "Acme", True),
    ("name", "starts_with", "acme", False),
    ("name", "starts_with", "", True),
    ("name", "ends_with", "Corp", True),
    ("name", "ends_with", "Acme", False),
    ("amount", "starts_with", "1", False),
    ("tags", "starts_with", "vip", False),
    ("lines[0].sku", "ends_with", "-1", True),
    # regex: RE2, search semantics (a match anywhere), strings only.
    ("name", "regex", "^Acme", True),
    ("name", "regex", "Corp", True),
    ("name", "regex", "corp$", False),
    ("name", "regex", "(?i)corp$", True),
    ("empty", "regex", "^$", True),
    ("amount", "regex", "1", False),
    ("tags", "regex", "vip", False),
    ("nothing", "regex", ".*", False),
    ("dueDate", "regex", r"^\d{4}-\d{2}-\d{2}T", True),
    # exists: present (JSON null counts as present) or absent.
    ("amount", "exists", True, True),
    ("amount", "exists", False, False),
    ("nothing", "exists", True, True),
    ("nothing", "exists", False, False),
    ("missing", "exists", True, False),
    ("missing", "exists", False, True),
]


@pytest.mark.parametrize(("field", "op", "value", "expected"), LEAF_CASES)
def test_operator(field: str, op: str, value: Any, expected: bool) -> None:
    assert evaluate(leaf(field, op, value)) is expected


MISSING_FIELD_CASES = [
    ("eq", 1, False),
    ("eq", None, False),
    ("ne", 1, True),
    ("ne", None, True),
    ("gt", 0, False),
    ("gte", 0, False),
    ("lt", 0, False),
    ("lte", "z", False),
    ("in", [None, 1], False),
    ("not_in", ["x"], False),
    ("not_in", [], False),
    ("contains", "x", False),
    ("starts_with", "", False),
    ("ends_with", "", False),
    ("regex", ".*", False),
    ("exists", True, False),
    ("exists", False, True),
]


@pytest.mark.parametrize(("op", "value", "expected"), MISSING_FIELD_CASES)
@pytest.mark.parametrize(
    "field", ["missing", "customer.missing", "lines.5.amount", "lines.-1.amount", "name.0", "amount.x"]
)
def test_missing_field_is_false_except_ne_and_exists_false(
    field: str, op: str, value: Any, expected: bool
) -> None:
    assert evaluate(leaf(field, op, value)) is expected


PATH_CASES = [
    ("customer.tier", "gold"),
    ("customer.address.country", "DE"),
    ("lines.0.amount", 10),
    ("lines[0].amount", 10),
    ("lines[1].amount", 20.5),
    ("lines.1.sku", "B-2"),
    ("matrix[1][0]", 3),
    ("matrix.0.1", 2),
    ("matrix[0].1", 2),
    ("tags.0", "vip"),
    ("tags[5].k", 1),
    ("0", "top-level key zero"),
    ("numbered.0", "object key zero"),
    # An index step on an object looks the digits up as a key.
    ("numbered[0]", "object key zero"),
]


@pytest.mark.parametrize(("field", "value"), PATH_CASES)
def test_field_paths_reach_nested_objects_and_array_elements(field: str, value: Any) -> None:
    assert evaluate(leaf(field, "eq", value)) is True
    assert evaluate(leaf(field, "exists", True)) is True


@pytest.mark.parametrize(
    "field", ["lines.2", "lines[2].amount", "lines.-1", "matrix[0][2]", "tags.vip", "customer.tier.0"]
)
def test_out_of_range_negative_and_mistyped_steps_are_missing(field: str) -> None:
    assert evaluate(leaf(field, "exists", False)) is True


YES = leaf("amount", "eq", 100)
NO = leaf("amount", "eq", 0)

COMPOSITE_CASES = [
    ({"all": []}, True),
    ({"any": []}, False),
    ({"not": {"all": []}}, False),
    ({"not": {"any": []}}, True),
    ({"all": [YES]}, True),
    ({"all": [NO]}, False),
    ({"all": [YES, YES]}, True),
    ({"all": [YES, NO]}, False),
    ({"all": [YES, YES, NO]}, False),
    ({"all": [YES, YES, YES]}, True),
    ({"all": [YES, YES, YES, NO]}, False),
    ({"all": [YES, YES, YES, YES, YES]}, True),
    ({"any": [NO]}, False),
    ({"any": [NO, YES]}, True),
    ({"any": [NO, NO]}, False),
    ({"any": [NO, NO, YES]}, True),
    ({"any": [NO, NO, NO]}, False),
    ({"any": [NO, NO, NO, YES]}, True),
    ({"any": [NO, NO, NO, NO, NO]}, False),
    ({"not": YES}, False),
    ({"not": {"not": YES}}, True),
    ({"all": [YES, {"any": [NO, {"not": NO}]}]}, True),
    ({"any": [{"all": [YES, NO]}, {"not": {"any": [YES]}}]}, False),
]


@pytest.mark.parametrize(("match", "expected"), COMPOSITE_CASES)
def test_composites(match: dict[str, Any], expected: bool) -> None:
    assert evaluate(match) is expected


def test_contract_example() -> None:
    rule = json.loads(
        """{"sourceEvents": ["INVOICE_GENERATED"],
            "match": {"all": [{"field": "amountDue", "op": "gte", "value": 10000},
                              {"not": {"field": "currency", "op": "in", "value": ["JPY", "KRW"]}}]}}"""
    )
    compiled = compile_trigger_rule(rule)
    assert compiled.source_events == frozenset({"INVOICE_GENERATED"})
    assert compiled.matches({"amountDue": 10000.0, "currency": "USD"}) is True
    assert compiled.matches({"amountDue": 25000, "currency": "JPY"}) is False
    assert compiled.matches({"amountDue": 9999.99, "currency": "EUR"}) is False
    assert compiled.matches({"amountDue": "25000", "currency": "EUR"}) is False
    assert compiled.matches({"currency": "EUR"}) is False


@pytest.mark.parametrize("payload", [None, [], [PAYLOAD], "amount", 100, 1.5, True, {}])
def test_non_object_payloads_have_no_fields(payload: Any) -> None:
    assert evaluate(leaf("amount", "exists", False), payload) is True
    assert evaluate(leaf("amount", "ne", 100), payload) is True
    assert evaluate(leaf("amount", "eq", 100), payload) is False
    assert evaluate(leaf("customer.tier", "in", ["gold"]), payload) is False


def test_array_payload_is_indexed_like_any_array() -> None:
    assert evaluate(leaf("0.amount", "eq", 100), [PAYLOAD]) is True


def test_catastrophic_backtracking_pattern_runs_in_linear_time() -> None:
    # A backtracking engine (Python's re) would not finish this; RE2 is linear in the text.
    assert evaluate(leaf("text", "regex", "(a+)+$"), {"text": "a" * 100_000 + "!"}) is False
    assert evaluate(leaf("text", "regex", "(a+)+$"), {"text": "a" * 100_000}) is True


def test_non_ascii_and_lone_surrogate_strings_are_matched_without_error() -> None:
    assert evaluate(leaf("text", "regex", "^Zürich, café"), {"text": "Zürich, café ☕"}) is True
    assert evaluate(leaf("text", "regex", "abc$"), {"text": "\ud800abc"}) is True
    assert evaluate(leaf("text", "regex", "^abc"), {"text": "\ud800abc"}) is False
    assert evaluate(leaf("text", "starts_with", "\ud800"), {"text": "\ud800abc"}) is True


def test_compiled_rule_is_frozen_and_reusable() -> None:
    compiled = compile_trigger_rule({"sourceEvents": ["A", "B", "A"], "match": YES})
    assert isinstance(compiled, CompiledRule)
    assert compiled.source_events == frozenset({"A", "B"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        compiled.source_events = frozenset()  # type: ignore[misc]
    assert [compiled.matches(PAYLOAD) for _ in range(3)] == [True, True, True]
    assert "source_events" in repr(compiled)


def test_compiled_rule_does_not_depend_on_the_source_dict_afterwards() -> None:
    rule: dict[str, Any] = {
        "sourceEvents": ["A"],
        "match": {"all": [leaf("currency", "in", ["USD"]), leaf("obj", "eq", {"a": [1]})]},
    }
    compiled = compile_trigger_rule(rule)
    rule["match"]["all"][0]["value"].append("EUR")
    rule["match"]["all"][0]["op"] = "not_in"
    rule["match"]["all"][1]["value"]["a"].append(2)
    assert compiled.matches({"currency": "USD", "obj": {"a": [1]}}) is True
    assert compiled.matches({"currency": "EUR", "obj": {"a": [1]}}) is False
    assert compiled.matches({"currency": "USD", "obj": {"a": [1, 2]}}) is False
