"""Regex leaves run on RE2: tenant-written patterns must never stall the trigger agent.

RE2 matches in time linear in the text, whatever the pattern, so `(a+)+$` cannot backtrack
catastrophically as it would with Python's `re`. The limits here bound the other cost, the size of
the compiled program (and so the per-event work and DFA memory), which RE2 alone does not cap.
"""

from __future__ import annotations

from collections.abc import Callable

import re2

# A pattern's compiled program and its lazily built DFA share this budget. RE2's default (8 MiB)
# is per pattern; a thousand tenant rules would then be allowed to claim gigabytes.
REGEX_MEMORY_BUDGET_BYTES = 1 << 20


def _options() -> re2.Options:
    options = re2.Options()
    options.max_mem = REGEX_MEMORY_BUDGET_BYTES
    # Tenant mistakes are reported as validation errors, not logged to stderr by the C++ library.
    options.log_errors = False
    # Only "does it match" is asked; without captures RE2 can answer from its DFA alone.
    options.never_capture = True
    return options


def check_pattern(pattern: str, *, max_length: int, max_program_size: int) -> str | None:
    """Return why `pattern` may not be used in a rule, or None when it is safe to compile."""
    if len(pattern) > max_length:
        return f"regex is {len(pattern)} characters long; the limit is {max_length}"
    try:
        program_size = int(re2.compile(pattern, _options()).programsize)
    except re2.error as error:
        return f"invalid regex: {_describe(error)}"
    except UnicodeError:
        return "invalid regex: the pattern is not valid Unicode text"
    if program_size > max_program_size:
        return (
            f"regex compiles to {program_size} RE2 instructions; the limit is {max_program_size} "
            "(simplify counted repetitions or large character classes)"
        )
    return None


def compile_search(pattern: str) -> Callable[[str], bool]:
    """Compile a checked pattern into a predicate with `re.search` semantics (match anywhere).

    A one-pattern RE2 Set is used instead of `re2.compile(...).search`: it answers yes/no without
    building a match object, which is several times cheaper per call from Python.
    """
    search_set = re2.Set.SearchSet(_options())
    search_set.Add(pattern)
    search_set.Compile()
    set_match = search_set.Match

    def search(text: str) -> bool:
        # surrogatepass: JSON may carry lone surrogates ("\ud800"); RE2 then sees invalid UTF-8
        # bytes, which no pattern character matches, instead of the encoder raising.
        return set_match(text.encode("utf-8", "surrogatepass")) is not None

    return search


def _describe(error: BaseException) -> str:
    """RE2's reason without the part of the pattern it quotes (`missing ): (abc`): error messages
    never echo what the client sent."""
    detail = error.args[0] if error.args else error
    text = detail.decode("utf-8", "replace") if isinstance(detail, bytes) else str(detail)
    return text.split(": ", 1)[0]
