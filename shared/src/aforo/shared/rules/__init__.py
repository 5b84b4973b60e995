"""Trigger rules: the predicate language a CUSTOM event definition uses to fire on SYSTEM events.

Pure and dependency-free apart from RE2: the API validates rules when a definition is saved, the
trigger agent compiles them once and evaluates `CompiledRule.matches(payload)` per event.
The language and its semantics are specified in docs/trigger-rules.md.
"""

from aforo.shared.rules.compiler import MISSING, CompiledRule, compile_trigger_rule
from aforo.shared.rules.field_path import PathStep, parse_field_path
from aforo.shared.rules.validation import (
    DEFAULT_LIMITS,
    OPERATORS,
    RuleLimits,
    RuleProblem,
    RuleValidationError,
    ensure_valid_trigger_rule,
    validate_trigger_rule,
)

__all__ = [
    "DEFAULT_LIMITS",
    "MISSING",
    "OPERATORS",
    "CompiledRule",
    "PathStep",
    "RuleLimits",
    "RuleProblem",
    "RuleValidationError",
    "compile_trigger_rule",
    "ensure_valid_trigger_rule",
    "parse_field_path",
    "validate_trigger_rule",
]
