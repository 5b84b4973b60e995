"""Which trigger rules are rejected, and the path inside the rule each rejection names."""

from __future__ import annotations

from typing import Any

import pytest

from aforo.shared.rules import (
    RuleLimits,
    RuleProblem,
    RuleValidationError,
    compile_trigger_rule,
    ensure_valid_trigger_rule,
    validate_trigger_rule,
)

SYSTEM_EVENT_TYPES = frozenset({"INVOICE_GENERATED", "PAYMENT_FAILED"})
GOOD_LEAF: dict[str, Any] = {"field": "amountDue", "op": "gte", "value": 10000}


def rule(match: Any, source_events: Any = ("INVOICE_GENERATED",)) -> dict[str, Any]:
    events = list(source_events) if isinstance(source_events, tuple) else source_events
    return {"sourceEvents": events, "match": match}


def leaf(field: Any = "amountDue", op: Any = "eq", value: Any = 1) -> dict[str, Any]:
    return {"field": field, "op": op, "value": value}


def nested_nots(count: int, node: dict[str, Any]) -> dict[str, Any]:
    for _ in range(count):
        node = {"not": node}
    return node


def first_problem(candidate: Any, **kwargs: Any) -> RuleProblem:
    problems = validate_trigger_rule(candidate, system_event_types=SYSTEM_EVENT_TYPES, **kwargs)
    assert problems, "expected the rule to be rejected"
    return problems[0]


REJECTIONS: list[tuple[Any, str, str]] = [
    # Operators and their operands.
    (
        rule({"all": [GOOD_LEAF, {"not": leaf(op="bogus")}]}),
        "match.all[1].not.op",
        "unknown operator;",
    ),
    (rule(leaf(op=1)), "match.op", "unknown operator;"),
    (rule(leaf(op="EQ")), "match.op", "unknown operator"),
    (rule({"any": [leaf(op="in", value=1)]}), "match.any[0].value", "must be an array for 'in'"),
    (rule(leaf(op="in", value="USD")), "match.value", "must be an array"),
    (rule(leaf(op="not_in", value={"a": 1})), "match.value", "must be an array for 'not_in'"),
    (rule(leaf(op="gt", value={"a": 1})), "match.value", "must be a number or a string for 'gt'"),
    (rule(leaf(op="gte", value=True)), "match.value", "must be a number or a string"),
    (rule(leaf(op="lt", value=None)), "match.value", "must be a number or a string"),
    (rule(leaf(op="lte", value=[1])), "match.value", "must be a number or a string"),
    (rule(leaf(op="exists", value="true")), "match.value", "must be true or false"),
    (rule(leaf(op="exists", value=1)), "match.value", "must be true or false"),
    (rule(leaf(op="regex", value=1)), "match.value", "must be a string for 'regex'"),
    (rule(leaf(op="starts_with", value=5)), "match.value", "must be a string for 'starts_with'"),
    (rule(leaf(op="ends_with", value=None)), "match.value", "must be a string for 'ends_with'"),
    # Regexes: RE2 must compile them, and they must stay small.
    (rule(leaf(op="regex", value="(a")), "match.value", "invalid regex: missing )"),
    (rule(leaf(op="regex", value="(?=lookahead)")), "match.value", "invalid regex"),
    (rule(leaf(op="regex", value=r"(a)\1")), "match.value", "invalid regex"),
    (rule(leaf(op="regex", value="a" * 513)), "match.value", "513 characters long; the limit is 512"),
    (rule(leaf(op="regex", value=r"[\p{L}]{50}")), "match.value", "RE2 instructions; the limit is 2048"),
    (rule(leaf(op="regex", value="a{1001}")), "match.value", "invalid regex: invalid repetition size"),
    # Node shapes.
    (rule("amountDue >= 10000"), "match", "must be an object"),
    (rule({"all": [GOOD_LEAF, 5]}), "match.all[1]", "must be an object"),
    (rule({}), "match", "expected a leaf"),
    (rule({"when": GOOD_LEAF}), "match", "expected a leaf"),
    (rule({"all": [], "any": []}), "match", "has both 'all' and 'any'"),
    (rule({"not": GOOD_LEAF, "all": []}), "match", "has both 'all' and 'not'"),
    (rule({"all": [], "field": "amountDue"}), "match.field", "unexpected key next to 'all'"),
    (rule({**GOOD_LEAF, "negate": True}), "match.negate", "unexpected key in a leaf"),
    (rule({"all": {"0": GOOD_LEAF}}), "match.all", "must be an array of rule nodes"),
    (rule({"any": GOOD_LEAF}), "match.any", "must be an array of rule nodes"),
    (rule({"not": [GOOD_LEAF]}), "match.not", "must be an object"),
    (rule({"op": "eq", "value": 1}), "match.field", "is required"),
    (rule({"field": "a", "value": 1}), "match.op", "is required"),
    (rule({"field": "a", "op": "eq"}), "match.value", "is required"),
    (rule({"field": "a", "op": "exists"}), "match.value", "is required"),
    # Field paths.
    (rule(leaf(field="")), "match.field", "non-empty"),
    (rule(leaf(field=5)), "match.field", "must be a string"),
    (rule(leaf(field="a..b")), "match.field", "empty segment"),
    (rule(leaf(field=".a")), "match.field", "empty segment"),
    (rule(leaf(field="lines[x].amount")), "match.field", "segment 0 of the field path"),
    (rule(leaf(field="lines[01]")), "match.field", "leading zeros"),
    (rule(leaf(field="lines[-1]")), "match.field", "segment 0 of the field path"),
    (rule(leaf(field="lines[0")), "match.field", "segment 0 of the field path"),
    (rule(leaf(field="[0].amount")), "match.field", "segment 0 of the field path"),
    (rule(leaf(field="a" * 257)), "match.field", "longer than 256 characters"),
    # Operand values must be plain, finite JSON.
    (rule(leaf(value=float("nan"))), "match.value", "finite number"),
    (rule(leaf(op="in", value=[1, float("inf")])), "match.value[1]", "finite number"),
    (rule(leaf(value={"a": {1, 2}})), "match.value.a", "must be a JSON value, not set"),
    (rule(leaf(value={1: "x"})), "match.value.1", "keys must be strings"),
    (rule(leaf(value=(1, 2))), "match.value", "must be a JSON value, not tuple"),
    (rule(leaf(value=nested_nots(17, {}))), "match.value" + ".not" * 16, "value is nested deeper than 16"),
    # Size limits.
    (rule(nested_nots(16, GOOD_LEAF)), "match" + ".not" * 16, "nested deeper than 16 levels"),
    (rule({"all": [GOOD_LEAF] * 200}), "match.all[199]", "more than 200 nodes"),
    (rule({"any": [{"not": GOOD_LEAF}] * 100}), "match.any[99].not", "more than 200 nodes"),
    (rule(leaf(op="in", value=["x" * 100] * 200)), "", "bytes as JSON; the limit is 16384"),
    # sourceEvents.
    ({"match": GOOD_LEAF}, "sourceEvents", "is required"),
    (rule(GOOD_LEAF, source_events=[]), "sourceEvents", "non-empty array"),
    (rule(GOOD_LEAF, source_events="INVOICE_GENERATED"), "sourceEvents", "non-empty array"),
    (rule(GOOD_LEAF, source_events=("INVOICE_GENERATED", "")), "sourceEvents[1]", "non-empty string"),
    (rule(GOOD_LEAF, source_events=(7,)), "sourceEvents[0]", "non-empty string"),
    (
        rule(GOOD_LEAF, source_events=("PAYMENT_FAILED", "INVOICE_CREATED")),
        "sourceEvents[1]",
        "unknown SYSTEM event type",
    ),
    # The rule object itself.
    ([GOOD_LEAF], "", "must be an object"),
    (None, "", "must be an object"),
    ({"sourceEvents": ["INVOICE_GENERATED"]}, "match", "is required"),
    ({**rule(GOOD_LEAF), "description": "big invoices"}, "description", "unexpected key"),
]


@pytest.mark.parametrize(("candidate", "path", "message"), REJECTIONS)
def test_rejection_names_the_path(candidate: Any, path: str, message: str) -> None:
    problem = first_problem(candidate)
    assert problem.path == path
    assert message in problem.message

    with pytest.raises(RuleValidationError) as raised:
        compile_trigger_rule(candidate, system_event_types=SYSTEM_EVENT_TYPES)
    assert raised.value.path == path
    assert message in raised.value.message
    assert raised.value.problems[0] == problem


ACCEPTED: list[dict[str, Any]] = [
    rule(GOOD_LEAF),
    rule({"all": []}),
    rule({"any": []}),
    rule(nested_nots(15, GOOD_LEAF)),
    rule({"all": [GOOD_LEAF] * 199}),
    rule(leaf(op="regex", value="a" * 512)),
    rule(leaf(op="regex", value="(?i)^inv-(?P<year>[0-9]{4})")),
    rule(leaf(field="a" * 256, op="exists", value=True)),
    rule(leaf(field="lines[0][12].amount.0.x", op="exists", value=False)),
    rule(leaf(field="customer.tax id (EU)", op="eq", value="x")),
    rule(leaf(op="eq", value={"a": [1, 2.5, None, True, {"b": "c"}]})),
    rule(leaf(op="contains", value=None)),
    rule(leaf(op="in", value=[])),
    rule(leaf(op="gt", value="2024-06-01")),
    rule(leaf(op="lt", value=-1.5)),
    rule(GOOD_LEAF, source_events=("INVOICE_GENERATED", "PAYMENT_FAILED", "INVOICE_GENERATED")),
]


@pytest.mark.parametrize("candidate", ACCEPTED)
def test_accepted_rules(candidate: dict[str, Any]) -> None:
    assert validate_trigger_rule(candidate, system_event_types=SYSTEM_EVENT_TYPES) == []
    ensure_valid_trigger_rule(candidate, system_event_types=SYSTEM_EVENT_TYPES)
    compile_trigger_rule(candidate, system_event_types=SYSTEM_EVENT_TYPES)


def test_any_source_event_name_is_accepted_without_a_catalogue() -> None:
    assert validate_trigger_rule(rule(GOOD_LEAF, source_events=("ANYTHING",))) == []


def test_all_problems_are_collected_in_document_order() -> None:
    candidate = {
        "sourceEvents": ["NOPE"],
        "match": {"any": [leaf(op="bogus"), {"not": leaf(field="a..b", op="in", value=1)}]},
        "extra": 1,
    }
    assert [
        problem.path for problem in validate_trigger_rule(candidate, system_event_types=SYSTEM_EVENT_TYPES)
    ] == [
        "extra",
        "sourceEvents[0]",
        "match.any[0].op",
        "match.any[1].not.field",
        "match.any[1].not.value",
    ]


def test_first_problem_does_not_depend_on_key_order() -> None:
    forward = {"sourceEvents": [], "match": {"field": "", "op": "bogus", "value": 1, "zz": 1, "aa": 2}}
    backward = {"match": {"aa": 2, "zz": 1, "value": 1, "op": "bogus", "field": ""}, "sourceEvents": []}
    assert validate_trigger_rule(forward) == validate_trigger_rule(backward)
    assert [problem.path for problem in validate_trigger_rule(forward)] == [
        "sourceEvents",
        "match.aa",
        "match.zz",
        "match.field",
        "match.op",
    ]


def test_error_is_a_value_error_that_reads_well() -> None:
    with pytest.raises(ValueError, match=r"^match\.all\[1\]\.not\.op: unknown operator;"):
        ensure_valid_trigger_rule(rule({"all": [GOOD_LEAF, {"not": leaf(op="bogus")}]}))
    with pytest.raises(RuleValidationError, match=r"^trigger rule: must be an object"):
        ensure_valid_trigger_rule("not a rule")
    error = RuleValidationError("sourceEvents", "is required")
    assert (error.path, error.message, error.problems) == (
        "sourceEvents",
        "is required",
        (RuleProblem("sourceEvents", "is required"),),
    )


def test_limits_can_be_tightened() -> None:
    limits = RuleLimits(max_depth=2, max_nodes=3, max_serialized_bytes=200, max_regex_length=3)
    assert first_problem(rule({"not": {"not": GOOD_LEAF}}), limits=limits).path == "match.not.not"
    assert first_problem(rule({"all": [GOOD_LEAF] * 3}), limits=limits).path == "match.all[2]"
    assert first_problem(rule(leaf(op="regex", value="abcd")), limits=limits).path == "match.value"
    assert first_problem(rule(leaf(op="in", value=["x" * 200])), limits=limits).path == ""


def test_hostile_shapes_are_rejected_without_recursion_errors() -> None:
    cyclic: dict[str, Any] = {"not": None}
    cyclic["not"] = cyclic
    assert first_problem(rule(cyclic)).message == "rule is nested deeper than 16 levels"

    deep: dict[str, Any] = GOOD_LEAF
    for _ in range(100_000):
        deep = {"all": [deep]}
    assert first_problem(rule(deep)).path == "match" + ".all[0]" * 16

    deep_value: list[Any] = []
    for _ in range(100_000):
        deep_value = [deep_value]
    assert "nested deeper" in first_problem(rule(leaf(value=deep_value))).message

    wide = rule({"any": [GOOD_LEAF] * 100_000})
    assert len(validate_trigger_rule(wide)) == 1
