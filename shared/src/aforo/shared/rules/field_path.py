"""Field paths such as `customer.tier`, `lines.0.amount` or `lines[0].amount`, parsed once per rule.

A path is parsed into a tuple of steps at validation/compile time so that evaluating an event only
walks dicts and lists; no string is split per event.
"""

from __future__ import annotations

import re
from typing import NamedTuple

# One dot-separated segment: a key, then zero or more `[index]` suffixes. Keys may hold any character
# except `.`, `[` and `]`; indexes are canonical non-negative integers (no sign, no leading zero,
# at most 18 digits so that an index always fits a machine word).
_SEGMENT = re.compile(r"([^.\[\]]+)((?:\[(?:0|[1-9][0-9]{0,17})\])*)")
_BRACKET_INDEX = re.compile(r"\[([0-9]+)\]")
_CANONICAL_INDEX = re.compile(r"0|[1-9][0-9]{0,17}")


class PathStep(NamedTuple):
    """One step into the payload: `key` is used on objects, `array_index` (if any) on arrays.

    `lines.0` and `lines[0]` both become `PathStep("0", 0)`, so an object whose key is "0" and an
    array's first element are reached the same way; a step without an index never enters an array.
    """

    key: str
    array_index: int | None


def _step(key: str) -> PathStep:
    return PathStep(key, int(key) if _CANONICAL_INDEX.fullmatch(key) else None)


def parse_field_path(path: str) -> tuple[PathStep, ...]:
    """Split a field path into steps; raise ValueError naming what is wrong with it."""
    if not path:
        raise ValueError("must be a non-empty dot path such as 'customer.tier' or 'lines[0].amount'")
    steps: list[PathStep] = []
    for position, segment in enumerate(path.split(".")):
        if not segment:
            raise ValueError(f"empty segment at position {position} of the field path")
        match = _SEGMENT.fullmatch(segment)
        if match is None:
            raise ValueError(
                f"segment {position} of the field path is not a key optionally followed by "
                "[index] (indexes are non-negative integers of at most 18 digits without leading zeros)"
            )
        steps.append(_step(match.group(1)))
        steps.extend(_step(index) for index in _BRACKET_INDEX.findall(match.group(2)))
    return tuple(steps)
