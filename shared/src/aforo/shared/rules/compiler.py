"""Turn a validated trigger rule into nested closures that decide, per event, whether it fires.

The rule is parsed once: field paths become tuples of steps and every leaf gets an operator closure
specialised for its operand, so evaluating an event never re-reads the rule. Evaluation is total:
any JSON payload (or a non-object one) yields True or False, never an exception, because every
operator checks the field's JSON type before comparing (see docs/trigger-rules.md for the table).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from aforo.shared.rules.field_path import PathStep, parse_field_path
from aforo.shared.rules.safe_regex import compile_search
from aforo.shared.rules.validation import DEFAULT_LIMITS, RuleLimits, ensure_valid_trigger_rule

# Field values are typed Any on purpose: they are arbitrary JSON, and each operator narrows the type
# with an exact `type(value) is ...` check (the JSON types json.loads produces) before using it.
Predicate = Callable[[Any], bool]
"""Evaluates a whole payload."""
ValueTest = Callable[[Any], bool]
"""Evaluates the value found at a leaf's field path (or MISSING)."""


class _Missing:
    """The value of a field path that leads nowhere; distinct from JSON null."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


@dataclass(frozen=True, slots=True, eq=False)
class CompiledRule:
    """A rule ready for the hot path: `matches(payload)` decides whether an event fires it.

    `matches` is a plain attribute holding the compiled closure, so a call costs no method binding.
    """

    source_events: frozenset[str]
    matches: Callable[[Mapping[str, Any]], bool] = field(repr=False)


def compile_trigger_rule(
    rule: Mapping[str, Any],
    *,
    system_event_types: Collection[str] | None = None,
    limits: RuleLimits = DEFAULT_LIMITS,
) -> CompiledRule:
    """Validate `rule` (raising RuleValidationError) and compile it once for repeated evaluation."""
    ensure_valid_trigger_rule(rule, system_event_types=system_event_types, limits=limits)
    # Operands are kept by the closures; a private copy keeps later edits of `rule` from leaking in.
    match = copy.deepcopy(rule["match"])
    return CompiledRule(source_events=frozenset(rule["sourceEvents"]), matches=_compile_node(match))


def _compile_node(node: Mapping[str, Any]) -> Predicate:
    if "all" in node:
        return _all_of([_compile_node(child) for child in node["all"]])
    if "any" in node:
        return _any_of([_compile_node(child) for child in node["any"]])
    if "not" in node:
        return _negation(_compile_node(node["not"]))
    return _leaf(parse_field_path(node["field"]), _OPERAND_TESTS[node["op"]](node["value"]))


# Composites. Small arities get unrolled closures: one call per child and no loop set-up.


def _always_true(payload: Any) -> bool:
    return True


def _always_false(payload: Any) -> bool:
    return False


def _all_of(children: list[Predicate]) -> Predicate:
    if not children:
        return _always_true
    if len(children) == 1:
        return children[0]
    if len(children) == 2:
        first, second = children

        def all_of_two(payload: Any) -> bool:
            return first(payload) and second(payload)

        return all_of_two
    if len(children) == 3:
        first, second, third = children

        def all_of_three(payload: Any) -> bool:
            return first(payload) and second(payload) and third(payload)

        return all_of_three
    frozen = tuple(children)

    def all_of(payload: Any) -> bool:
        for child in frozen:  # noqa: SIM110 - no generator allocated per event
            if not child(payload):
                return False
        return True

    return all_of


def _any_of(children: list[Predicate]) -> Predicate:
    if not children:
        return _always_false
    if len(children) == 1:
        return children[0]
    if len(children) == 2:
        first, second = children

        def any_of_two(payload: Any) -> bool:
            return first(payload) or second(payload)

        return any_of_two
    if len(children) == 3:
        first, second, third = children

        def any_of_three(payload: Any) -> bool:
            return first(payload) or second(payload) or third(payload)

        return any_of_three
    frozen = tuple(children)

    def any_of(payload: Any) -> bool:
        for child in frozen:  # noqa: SIM110 - no generator allocated per event
            if child(payload):
                return True
        return False

    return any_of


def _negation(child: Predicate) -> Predicate:
    def negation(payload: Any) -> bool:
        return not child(payload)

    return negation


# Field access.


def _resolve(value: Any, steps: tuple[PathStep, ...]) -> Any:
    """Follow `steps` from `value`; MISSING when a step finds no key, no element or a scalar."""
    for key, array_index in steps:
        kind = type(value)
        if kind is dict:
            value = value.get(key, MISSING)
        elif kind is list or kind is tuple:
            if array_index is None or array_index >= len(value):
                return MISSING
            value = value[array_index]
        elif isinstance(value, Mapping):
            value = value.get(key, MISSING)
        else:
            return MISSING
    return value


def _leaf(steps: tuple[PathStep, ...], test: ValueTest) -> Predicate:
    """Pair a field path with its operator test; top-level and `a.b` keys get a dict fast path."""
    if len(steps) == 1:
        key = steps[0].key

        def top_level_leaf(payload: Any) -> bool:
            if type(payload) is dict:
                return test(payload.get(key, MISSING))
            return test(_resolve(payload, steps))

        return top_level_leaf
    if len(steps) == 2 and steps[1].array_index is None:
        outer_key, inner_key = steps[0].key, steps[1].key

        def nested_leaf(payload: Any) -> bool:
            if type(payload) is dict:
                inner = payload.get(outer_key)
                if type(inner) is dict:
                    return test(inner.get(inner_key, MISSING))
            return test(_resolve(payload, steps))

        return nested_leaf

    def deep_leaf(payload: Any) -> bool:
        return test(_resolve(payload, steps))

    return deep_leaf


# Operators. Each factory runs once per leaf and returns a test over the resolved field value.


def _is_number(value: Any) -> bool:
    # Exact types: bool is an int subclass in Python but never a number in a rule.
    kind = type(value)
    return kind is int or kind is float


def _json_equal(actual: Any, expected: Any) -> bool:
    """JSON equality with 1 == 1.0 and True != 1; `expected` is a validated rule operand."""
    if expected is None or expected is True or expected is False:
        return actual is expected
    if type(expected) is str:
        return type(actual) is str and actual == expected
    if type(expected) is list:
        kind = type(actual)
        if (kind is not list and kind is not tuple) or len(actual) != len(expected):
            return False
        for actual_item, expected_item in zip(actual, expected, strict=True):
            if not _json_equal(actual_item, expected_item):
                return False
        return True
    if isinstance(expected, Mapping):
        if not isinstance(actual, Mapping) or len(actual) != len(expected):
            return False
        for key, expected_item in expected.items():
            actual_item = actual.get(key, MISSING)
            if actual_item is MISSING or not _json_equal(actual_item, expected_item):
                return False
        return True
    return _is_number(actual) and actual == expected


def _equals(expected: Any) -> ValueTest:
    if expected is None:
        return lambda value: value is None
    if expected is True:
        return lambda value: value is True
    if expected is False:
        return lambda value: value is False
    if isinstance(expected, str):
        # Among JSON values only a string can equal a string, so no type check is needed.
        return lambda value: value == expected
    if isinstance(expected, int | float):
        return lambda value: value == expected and type(value) is not bool
    return lambda value: _json_equal(value, expected)


def _not_equals(expected: Any) -> ValueTest:
    """Exactly `not eq`, so a missing field or a value of another type is "not equal"."""
    if isinstance(expected, str):
        return lambda value: value != expected
    equals = _equals(expected)
    return lambda value: not equals(value)


def _member_of(options: list[Any]) -> ValueTest:
    """`in`: hashable strings and numbers go to a set (1 and 1.0 share a slot), the rest are scanned."""
    scalars = frozenset(option for option in options if isinstance(option, str) or _is_number(option))
    others = tuple(
        _equals(option) for option in options if not (isinstance(option, str) or _is_number(option))
    )
    if not others:

        def in_scalars(value: Any) -> bool:
            kind = type(value)
            return (kind is str or kind is int or kind is float) and value in scalars

        return in_scalars

    def in_options(value: Any) -> bool:
        kind = type(value)
        if kind is str or kind is int or kind is float:
            return value in scalars
        for equals in others:  # noqa: SIM110 - no generator allocated per event
            if equals(value):
                return True
        return False

    return in_options


def _not_member_of(options: list[Any]) -> ValueTest:
    member_of = _member_of(options)
    return lambda value: value is not MISSING and not member_of(value)


def _contains(expected: Any) -> ValueTest:
    """Substring of a string field, or an element (by JSON equality) of an array field."""
    if isinstance(expected, str):

        def contains_text(value: Any) -> bool:
            kind = type(value)
            # For arrays `in` uses ==, and among JSON values only a string equals a string.
            return (kind is str or kind is list or kind is tuple) and expected in value

        return contains_text
    equals = _equals(expected)

    def contains_element(value: Any) -> bool:
        kind = type(value)
        if kind is list or kind is tuple:
            for item in value:
                if equals(item):
                    return True
        return False

    return contains_element


def _starts_with(prefix: str) -> ValueTest:
    return lambda value: type(value) is str and value.startswith(prefix)


def _ends_with(suffix: str) -> ValueTest:
    return lambda value: type(value) is str and value.endswith(suffix)


def _regex(pattern: str) -> ValueTest:
    search = compile_search(pattern)
    return lambda value: type(value) is str and search(value)


def _exists(expected: bool) -> ValueTest:
    if expected:
        return lambda value: value is not MISSING
    return lambda value: value is MISSING


def _ordering(op: str) -> Callable[[Any], ValueTest]:
    """gt/gte/lt/lte: number against number, or string against string by code point; else False."""

    def factory(bound: Any) -> ValueTest:
        if isinstance(bound, str):
            return _STRING_ORDERINGS[op](bound)
        return _NUMBER_ORDERINGS[op](bound)

    return factory


def _number_gt(bound: Any) -> ValueTest:
    return lambda value: (type(value) is int or type(value) is float) and value > bound


def _number_gte(bound: Any) -> ValueTest:
    return lambda value: (type(value) is int or type(value) is float) and value >= bound


def _number_lt(bound: Any) -> ValueTest:
    return lambda value: (type(value) is int or type(value) is float) and value < bound


def _number_lte(bound: Any) -> ValueTest:
    return lambda value: (type(value) is int or type(value) is float) and value <= bound


def _string_gt(bound: str) -> ValueTest:
    return lambda value: type(value) is str and value > bound


def _string_gte(bound: str) -> ValueTest:
    return lambda value: type(value) is str and value >= bound


def _string_lt(bound: str) -> ValueTest:
    return lambda value: type(value) is str and value < bound


def _string_lte(bound: str) -> ValueTest:
    return lambda value: type(value) is str and value <= bound


_NUMBER_ORDERINGS: Final[dict[str, Callable[[Any], ValueTest]]] = {
    "gt": _number_gt,
    "gte": _number_gte,
    "lt": _number_lt,
    "lte": _number_lte,
}
_STRING_ORDERINGS: Final[dict[str, Callable[[str], ValueTest]]] = {
    "gt": _string_gt,
    "gte": _string_gte,
    "lt": _string_lt,
    "lte": _string_lte,
}
_OPERAND_TESTS: Final[dict[str, Callable[[Any], ValueTest]]] = {
    "eq": _equals,
    "ne": _not_equals,
    "in": _member_of,
    "not_in": _not_member_of,
    "contains": _contains,
    "starts_with": _starts_with,
    "ends_with": _ends_with,
    "regex": _regex,
    "exists": _exists,
    "gt": _ordering("gt"),
    "gte": _ordering("gte"),
    "lt": _ordering("lt"),
    "lte": _ordering("lte"),
}
