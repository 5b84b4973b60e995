"""Decide whether a tenant's trigger rule may be saved or compiled, and say where it is wrong.

The API runs this when a CUSTOM event definition is saved and the trigger agent runs it again before
compiling, so a rule that passes here compiles, and its evaluation is bounded by the limits below.
Every problem names its place inside the rule (`match.all[1].not.op`, `sourceEvents[0]`), and the
problems come in a fixed order (the order a reader meets them, unexpected keys of a node before its
known keys), so the first one is the same for the same rule whatever the key order of its dicts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Final, NamedTuple

from aforo.shared.rules.field_path import parse_field_path
from aforo.shared.rules.safe_regex import check_pattern

ANY_VALUE_OPERATORS: Final = frozenset({"eq", "ne", "contains"})
ARRAY_VALUE_OPERATORS: Final = frozenset({"in", "not_in"})
ORDERING_OPERATORS: Final = frozenset({"gt", "gte", "lt", "lte"})
STRING_VALUE_OPERATORS: Final = frozenset({"starts_with", "ends_with", "regex"})
OPERATORS: Final = (
    ANY_VALUE_OPERATORS | ARRAY_VALUE_OPERATORS | ORDERING_OPERATORS | STRING_VALUE_OPERATORS | {"exists"}
)
COMPOSITE_KEYS: Final = ("all", "any", "not")
LEAF_KEYS: Final = ("field", "op", "value")
RULE_KEYS: Final = ("sourceEvents", "match")

_OPERATOR_LIST: Final = ", ".join(sorted(OPERATORS))
_NODE_SHAPE: Final = (
    'a leaf {"field", "op", "value"} or exactly one of {"all": [...]}, {"any": [...]}, {"not": {...}}'
)


@dataclass(frozen=True, slots=True)
class RuleLimits:
    """Bounds on what a tenant may save; they bound compile time, memory and per-event work."""

    max_depth: int = 16
    max_nodes: int = 200
    max_serialized_bytes: int = 16 * 1024
    max_regex_length: int = 512
    max_regex_program_size: int = 2048
    max_field_path_length: int = 256


DEFAULT_LIMITS: Final = RuleLimits()


class RuleProblem(NamedTuple):
    """One reason a rule is rejected; `path` is "" when the rule as a whole is at fault."""

    path: str
    message: str


class RuleValidationError(ValueError):
    """A rule was rejected; `path`/`message` are the first problem, `problems` all that were found."""

    def __init__(self, path: str, message: str, problems: Collection[RuleProblem] = ()) -> None:
        super().__init__(path, message)
        self.path = path
        self.message = message
        self.problems: tuple[RuleProblem, ...] = tuple(problems) or (RuleProblem(path, message),)

    def __str__(self) -> str:
        return f"{self.path or 'trigger rule'}: {self.message}"


def validate_trigger_rule(
    rule: object,
    *,
    system_event_types: Collection[str] | None = None,
    limits: RuleLimits = DEFAULT_LIMITS,
) -> list[RuleProblem]:
    """Return every problem found in `rule` (empty when it may be saved and compiled).

    `system_event_types`, when given, is the set of SYSTEM event type names `sourceEvents` may use.
    """
    oversize = _oversize_problem(rule, limits)
    if oversize is not None:
        # Nothing else is looked at: the size bound is what keeps the rest of validation cheap.
        return [oversize]
    checker = _Checker(limits, None if system_event_types is None else frozenset(system_event_types))
    checker.check_rule(rule)
    return checker.problems


def ensure_valid_trigger_rule(
    rule: object,
    *,
    system_event_types: Collection[str] | None = None,
    limits: RuleLimits = DEFAULT_LIMITS,
) -> None:
    """Raise RuleValidationError for the first problem in `rule`; the raising form of validation."""
    problems = validate_trigger_rule(rule, system_event_types=system_event_types, limits=limits)
    if problems:
        raise RuleValidationError(problems[0].path, problems[0].message, problems)


def _oversize_problem(rule: object, limits: RuleLimits) -> RuleProblem | None:
    try:
        serialized = json.dumps(rule, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        # Not JSON (a set, NaN, a cycle, absurd nesting): the structural pass names the place,
        # and its depth and node limits bound the walk.
        return None
    size = len(serialized.encode("utf-8", "surrogatepass"))
    if size > limits.max_serialized_bytes:
        return RuleProblem("", f"rule is {size} bytes as JSON; the limit is {limits.max_serialized_bytes}")
    return None


def _key_path(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _sorted_unexpected(mapping: Mapping[object, object], allowed: Collection[str]) -> list[str]:
    return sorted(str(key) for key in mapping if key not in allowed)


class _Checker:
    """One validation pass; collects problems in document order and stops at the node limit."""

    def __init__(self, limits: RuleLimits, system_event_types: frozenset[str] | None) -> None:
        self.limits = limits
        self.system_event_types = system_event_types
        self.problems: list[RuleProblem] = []
        self.node_count = 0

    def add(self, path: str, message: str) -> None:
        self.problems.append(RuleProblem(path, message))

    def check_rule(self, rule: object) -> None:
        if not isinstance(rule, Mapping):
            self.add("", 'must be an object {"sourceEvents": [...], "match": {...}}')
            return
        for key in _sorted_unexpected(rule, RULE_KEYS):
            self.add(key, f"unexpected key; a trigger rule has only {' and '.join(RULE_KEYS)}")
        if "sourceEvents" in rule:
            self.check_source_events(rule["sourceEvents"])
        else:
            self.add("sourceEvents", "is required")
        if "match" in rule:
            self.check_node(rule["match"], "match", depth=1)
        else:
            self.add("match", "is required")

    def check_source_events(self, source_events: object) -> None:
        if not isinstance(source_events, list) or not source_events:
            self.add("sourceEvents", "must be a non-empty array of SYSTEM event type names")
            return
        for position, name in enumerate(source_events):
            path = f"sourceEvents[{position}]"
            if not isinstance(name, str) or not name:
                self.add(path, "must be a non-empty string naming a SYSTEM event type")
            elif self.system_event_types is not None and name not in self.system_event_types:
                self.add(path, "unknown SYSTEM event type")

    def check_node(self, node: object, path: str, depth: int) -> None:
        if self.node_count > self.limits.max_nodes:
            return
        self.node_count += 1
        if self.node_count > self.limits.max_nodes:
            self.add(path, f"rule has more than {self.limits.max_nodes} nodes")
            return
        if depth > self.limits.max_depth:
            self.add(path, f"rule is nested deeper than {self.limits.max_depth} levels")
            return
        if not isinstance(node, Mapping):
            self.add(path, f"must be an object: {_NODE_SHAPE}")
            return
        composite_keys = [key for key in COMPOSITE_KEYS if key in node]
        if len(composite_keys) > 1:
            self.add(
                path, f"has both {composite_keys[0]!r} and {composite_keys[1]!r}; expected {_NODE_SHAPE}"
            )
        elif composite_keys:
            self.check_composite(node, path, composite_keys[0], depth)
        elif any(key in node for key in LEAF_KEYS):
            self.check_leaf(node, path)
        else:
            self.add(path, f"expected {_NODE_SHAPE}")

    def check_composite(self, node: Mapping[object, object], path: str, kind: str, depth: int) -> None:
        for key in _sorted_unexpected(node, (kind,)):
            self.add(_key_path(path, key), f"unexpected key next to {kind!r}")
        children = node[kind]
        child_path = _key_path(path, kind)
        if kind == "not":
            self.check_node(children, child_path, depth + 1)
            return
        if not isinstance(children, list):
            self.add(child_path, f"must be an array of rule nodes ({_NODE_SHAPE})")
            return
        for position, child in enumerate(children):
            self.check_node(child, f"{child_path}[{position}]", depth + 1)

    def check_leaf(self, node: Mapping[object, object], path: str) -> None:
        for key in _sorted_unexpected(node, LEAF_KEYS):
            self.add(_key_path(path, key), "unexpected key in a leaf; a leaf has only field, op and value")
        self.check_field(node.get("field"), _key_path(path, "field"), present="field" in node)
        op = node.get("op")
        op_path = _key_path(path, "op")
        if "op" not in node:
            self.add(op_path, "is required")
        elif not isinstance(op, str) or op not in OPERATORS:
            self.add(op_path, f"unknown operator; expected one of {_OPERATOR_LIST}")
        value_path = _key_path(path, "value")
        if "value" not in node:
            self.add(value_path, "is required")
        elif isinstance(op, str) and op in OPERATORS:
            self.check_operand(op, node["value"], value_path)

    def check_field(self, field: object, path: str, *, present: bool) -> None:
        if not present:
            self.add(path, "is required")
        elif not isinstance(field, str):
            self.add(path, "must be a string dot path such as 'customer.tier' or 'lines[0].amount'")
        elif len(field) > self.limits.max_field_path_length:
            self.add(path, f"field path is longer than {self.limits.max_field_path_length} characters")
        else:
            try:
                parse_field_path(field)
            except ValueError as error:
                self.add(path, str(error))

    def check_operand(self, op: str, value: object, path: str) -> None:
        """Check that `value` suits `op`, then that it is plain JSON all the way down."""
        if op in ARRAY_VALUE_OPERATORS and not isinstance(value, list):
            self.add(path, f"must be an array for {op!r}")
        elif op in ORDERING_OPERATORS and not (_is_number(value) or isinstance(value, str)):
            self.add(path, f"must be a number or a string for {op!r}")
        elif op in STRING_VALUE_OPERATORS and not isinstance(value, str):
            self.add(path, f"must be a string for {op!r}")
        elif op == "exists" and not isinstance(value, bool):
            self.add(path, "must be true or false for 'exists'")
        elif self.check_json(value, path, depth=1) and op == "regex" and isinstance(value, str):
            problem = check_pattern(
                value,
                max_length=self.limits.max_regex_length,
                max_program_size=self.limits.max_regex_program_size,
            )
            if problem is not None:
                self.add(path, problem)

    def check_json(self, value: object, path: str, depth: int) -> bool:
        """Report values json.loads could not have produced; return whether `value` is JSON."""
        if value is None or isinstance(value, bool | str | int):
            return True
        if isinstance(value, float):
            if math.isfinite(value):
                return True
            self.add(path, "must be a finite number (NaN and Infinity are not JSON)")
            return False
        if depth > self.limits.max_depth:
            self.add(path, f"value is nested deeper than {self.limits.max_depth} levels")
            return False
        if isinstance(value, list):
            results = [self.check_json(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value)]
            return all(results)
        if isinstance(value, Mapping):
            ok = True
            for key, item in sorted(value.items(), key=lambda entry: str(entry[0])):
                if not isinstance(key, str):
                    self.add(_key_path(path, key), "object keys must be strings")
                    ok = False
                else:
                    ok = self.check_json(item, _key_path(path, key), depth + 1) and ok
            return ok
        self.add(path, f"must be a JSON value, not {type(value).__name__}")
        return False


def _is_number(value: object) -> bool:
    """JSON numbers; bool is excluded although Python makes it an int subclass."""
    return isinstance(value, int | float) and not isinstance(value, bool)
