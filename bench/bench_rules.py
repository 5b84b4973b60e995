"""Trigger rule engine throughput against a hand-inlined Python baseline measured in the same run.

Builds 1,000 rules of mixed shape (every operator, nested all/any/not, regexes, nested and indexed
field paths) over invoice-like payloads, compiles each rule twice, once with
`aforo.shared.rules.compile_trigger_rule` and once as generated Python source (a lambda using
`payload.get(...)` and exact type checks, `eval`-ed once), checks both agree on every
(rule, payload) pair, and prints evaluations per second for both and their ratio:

    rules: engine=NNN evals/s baseline=NNN evals/s ratio=0.NN target>=0.30 PASS

The baseline's regex leaves call the same RE2 matcher the engine uses, so the ratio measures the
engine's own overhead rather than the regex library. Run: `.venv/bin/python -m bench.bench_rules`;
`--strict` makes a ratio below the target exit non-zero.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from aforo.shared.rules import compile_trigger_rule, parse_field_path
from aforo.shared.rules.safe_regex import compile_search

TARGET_RATIO = 0.30

CURRENCIES = ["USD", "EUR", "GBP", "JPY", "KRW", "INR", "BRL"]
TIERS = ["free", "starter", "growth", "enterprise"]
STATUSES = ["draft", "open", "paid", "void", "uncollectible"]
COUNTRIES = ["US", "DE", "GB", "JP", "KR", "IN", "BR", "FR"]
TAGS = ["annual", "monthly", "usage", "overage", "priority", "trial-converted", "reseller", "eu"]
SKUS = ["API-CALLS", "SEATS", "STORAGE-GB", "SUPPORT-PLUS", "SMS", "EMAIL"]

# Field paths by the JSON type they usually hold in the payloads below.
NUMBER_FIELDS = [
    "amountDue",
    "amountPaid",
    "lines.0.amount",
    "lines[1].quantity",
    "metadata.priority",
    "discount",
]
STRING_FIELDS = [
    "currency",
    "status",
    "customer.tier",
    "customer.country",
    "dueDate",
    "invoiceId",
    "customer.email",
    "lines[0].sku",
]
ARRAY_FIELDS = ["tags", "customer.tags"]
ANY_FIELDS = [*NUMBER_FIELDS, *STRING_FIELDS, *ARRAY_FIELDS, "isTrial", "promo.code", "lines.3.sku"]
OPERATORS = [
    "eq",
    "ne",
    "gt",
    "gte",
    "lt",
    "lte",
    "in",
    "not_in",
    "contains",
    "starts_with",
    "ends_with",
    "regex",
    "exists",
]
REGEXES = [
    r"^INV-20(2[3-5])-\d{5}$",
    r"@(example|acme)\.(com|io)$",
    r"(?i)^api",
    r"^\d{4}-\d{2}-(0[1-9]|1[0-5])T",
    r"(a+)+$",
    r"GB|GR|DE",
]


def make_payload(rng: random.Random) -> dict[str, Any]:
    """An invoice event as the billing core would publish it, with optional parts sometimes absent."""
    lines = [
        {
            "sku": rng.choice(SKUS),
            "description": f"{rng.choice(SKUS).lower()} for period",
            "amount": rng.choice([rng.randint(0, 50_000), round(rng.uniform(0, 5_000), 2)]),
            "quantity": rng.randint(1, 500),
        }
        for _ in range(rng.randint(0, 5))
    ]
    customer_id = rng.randint(1, 10_000)
    payload: dict[str, Any] = {
        "invoiceId": f"INV-{rng.choice([2022, 2023, 2024, 2025])}-{rng.randint(0, 99_999):05d}",
        "amountDue": rng.choice([rng.randint(0, 200_000), round(rng.uniform(0, 20_000), 2), 0]),
        "amountPaid": rng.randint(0, 10_000),
        "currency": rng.choice(CURRENCIES),
        "status": rng.choice(STATUSES),
        "dueDate": f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T00:00:00Z",
        "customer": {
            "id": f"cus_{customer_id}",
            "tier": rng.choice(TIERS),
            "country": rng.choice(COUNTRIES),
            "email": f"billing{customer_id}@{rng.choice(['example.com', 'acme.io', 'corp.net'])}",
            "tags": rng.sample(TAGS, rng.randint(0, 3)),
        },
        "lines": lines,
        "tags": rng.sample(TAGS, rng.randint(0, 4)),
        "isTrial": rng.random() < 0.2,
        "discount": rng.choice([None, 0, 5, 12.5]),
    }
    if rng.random() < 0.7:
        payload["metadata"] = {"source": rng.choice(["api", "ui", "import"]), "priority": rng.randint(1, 5)}
    if rng.random() < 0.1:
        payload["promo"] = {"code": "SPRING" + str(rng.randint(1, 9))}
    return payload


def make_leaf(rng: random.Random) -> dict[str, Any]:
    op = rng.choice(OPERATORS)
    if op in ("eq", "ne"):
        kind = rng.choice(["number", "string", "string", "bool", "null", "array"])
        if kind == "number":
            return {"field": rng.choice(NUMBER_FIELDS), "op": op, "value": rng.choice([0, 5, 100, 12.5, 1.0])}
        if kind == "string":
            field = rng.choice(["currency", "status", "customer.tier", "customer.country"])
            options = {"currency": CURRENCIES, "status": STATUSES, "customer.tier": TIERS}
            return {"field": field, "op": op, "value": rng.choice(options.get(field, COUNTRIES))}
        if kind == "bool":
            return {"field": "isTrial", "op": op, "value": rng.random() < 0.5}
        if kind == "null":
            return {"field": "discount", "op": op, "value": None}
        return {"field": "tags", "op": op, "value": rng.sample(TAGS, rng.randint(0, 2))}
    if op in ("gt", "gte", "lt", "lte"):
        if rng.random() < 0.75:
            return {"field": rng.choice(NUMBER_FIELDS), "op": op, "value": rng.choice([0, 10, 999.5, 10_000])}
        return {"field": "dueDate", "op": op, "value": f"2024-{rng.randint(1, 12):02d}-15"}
    if op in ("in", "not_in"):
        if rng.random() < 0.7:
            field = rng.choice(["currency", "customer.tier", "customer.country", "status"])
            universe = {"currency": CURRENCIES, "customer.tier": TIERS, "status": STATUSES}.get(
                field, COUNTRIES
            )
            return {"field": field, "op": op, "value": rng.sample(universe, rng.randint(1, 4))}
        return {"field": rng.choice(NUMBER_FIELDS), "op": op, "value": rng.sample([0, 1, 2, 3, 5, 100.0], 3)}
    if op == "contains":
        if rng.random() < 0.5:
            return {"field": rng.choice(ARRAY_FIELDS), "op": op, "value": rng.choice(TAGS)}
        return {
            "field": rng.choice(["customer.email", "invoiceId"]),
            "op": op,
            "value": rng.choice(["acme", "-2024-"]),
        }
    if op == "starts_with":
        return {
            "field": rng.choice(["invoiceId", "lines[0].sku"]),
            "op": op,
            "value": rng.choice(["INV-2024", "S"]),
        }
    if op == "ends_with":
        return {"field": "customer.email", "op": op, "value": rng.choice([".com", ".io"])}
    if op == "regex":
        return {"field": rng.choice(STRING_FIELDS), "op": op, "value": rng.choice(REGEXES)}
    return {"field": rng.choice(ANY_FIELDS), "op": "exists", "value": rng.random() < 0.7}


def make_node(rng: random.Random, depth: int) -> dict[str, Any]:
    roll = rng.random()
    if depth >= 3 or roll < 0.35:
        return make_leaf(rng)
    if roll < 0.45:
        return {"not": make_node(rng, depth + 1)}
    kind = "all" if roll < 0.8 else "any"
    return {kind: [make_node(rng, depth + 1) for _ in range(rng.randint(0, 4))]}


class _Missing:
    """The baseline's own "no such field" marker."""


def baseline_source(rule: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Python source for `rule` as one lambda, plus the constants it binds as default arguments."""
    constants: dict[str, Any] = {"M": _Missing()}
    counter = itertools.count()

    def constant(value: Any) -> str:
        name = f"C{next(counter)}"
        constants[name] = value
        return name

    def fresh() -> str:
        return f"t{next(counter)}"

    def value_expression(field: str) -> str:
        first, *rest = parse_field_path(field)
        expression = f"p.get({first.key!r}, M)"
        for step in rest:
            temporary = fresh()
            if step.array_index is None:
                expression = (
                    f"({temporary}.get({step.key!r}, M) if type({temporary} := {expression}) is dict else M)"
                )
            else:
                index = step.array_index
                expression = (
                    f"({temporary}[{index}] if type({temporary} := {expression}) is list "
                    f"and len({temporary}) > {index} else M)"
                )
        return expression

    def leaf(node: dict[str, Any]) -> str:
        op, value = node["op"], node["value"]
        found = value_expression(node["field"])
        x = fresh()
        if op in ("eq", "ne"):
            if isinstance(value, str):
                return f"({found} {'==' if op == 'eq' else '!='} {value!r})"
            if isinstance(value, bool) or value is None:
                return f"({found} {'is' if op == 'eq' else 'is not'} {value!r})"
            if isinstance(value, int | float):
                equal = f"(({x} := {found}) == {value!r} and type({x}) is not bool)"
            else:
                equal = f"_jeq({found}, {constant(value)})"
            return equal if op == "eq" else f"(not {equal})"
        if op in ("gt", "gte", "lt", "lte"):
            symbol = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[op]
            check = "is str" if isinstance(value, str) else "in (int, float)"
            return f"(type({x} := {found}) {check} and {x} {symbol} {value!r})"
        if op in ("in", "not_in"):
            check = "is str" if isinstance(value[0], str) else "in (int, float)"
            member = f"(type({x}) {check} and {x} in {constant(frozenset(value))})"
            if op == "in":
                return f"(({x} := {found}) is not M and {member})"
            return f"(({x} := {found}) is not M and not {member})"
        if op == "contains":
            return f"(type({x} := {found}) in (str, list) and {value!r} in {x})"
        if op in ("starts_with", "ends_with"):
            method = "startswith" if op == "starts_with" else "endswith"
            return f"(type({x} := {found}) is str and {x}.{method}({value!r}))"
        if op == "regex":
            return f"(type({x} := {found}) is str and {constant(compile_search(value))}({x}))"
        return f"({found} {'is not' if value else 'is'} M)"

    def node_source(node: dict[str, Any]) -> str:
        if "all" in node:
            return "(" + " and ".join(map(node_source, node["all"])) + ")" if node["all"] else "True"
        if "any" in node:
            return "(" + " or ".join(map(node_source, node["any"])) + ")" if node["any"] else "False"
        if "not" in node:
            return f"(not {node_source(node['not'])})"
        return leaf(node)

    body = node_source(rule["match"])
    return body, constants


def _jeq(actual: Any, expected: Any) -> bool:
    """Structural equality for the few array operands; bools never equal numbers."""
    if isinstance(expected, list):
        return (
            type(actual) is list
            and len(actual) == len(expected)
            and all(_jeq(a, e) for a, e in zip(actual, expected, strict=True))
        )
    if isinstance(expected, str):
        return bool(actual == expected)
    if expected is None or isinstance(expected, bool):
        return actual is expected
    return type(actual) in (int, float) and bool(actual == expected)


def compile_baseline(rule: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    body, constants = baseline_source(rule)
    defaults = ", ".join(f"{name}={name}" for name in constants)
    source = f"lambda p, {defaults}: bool({body})"
    # Trusted, locally generated source: this is the hand-inlined baseline being measured.
    predicate: Callable[[dict[str, Any]], bool] = eval(source, {"_jeq": _jeq, **constants})
    return predicate


def evals_per_second(predicates: Sequence[Callable[[Any], bool]], payloads: Sequence[Any]) -> float:
    started = time.perf_counter()
    for predicate in predicates:
        for payload in payloads:
            predicate(payload)
    return len(predicates) * len(payloads) / (time.perf_counter() - started)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--payloads", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5, help="best of N timed passes for each side")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--strict", action="store_true", help="exit 1 when the ratio misses the target")
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    rules = [
        {"sourceEvents": ["INVOICE_GENERATED"], "match": make_node(rng, depth=0)} for _ in range(args.rules)
    ]
    payloads = [make_payload(rng) for _ in range(args.payloads)]
    leaves = sum(json.dumps(rule).count('"op"') for rule in rules)

    started = time.perf_counter()
    engine = [compile_trigger_rule(rule).matches for rule in rules]
    compile_seconds = time.perf_counter() - started
    baseline = [compile_baseline(rule) for rule in rules]

    fired = 0
    for rule, engine_predicate, baseline_predicate in zip(rules, engine, baseline, strict=True):
        for payload in payloads:
            expected = baseline_predicate(payload)
            if engine_predicate(payload) is not expected:
                print(f"MISMATCH rule={json.dumps(rule)} payload={json.dumps(payload)} baseline={expected}")
                return 2
            fired += expected

    engine_rates: list[float] = []
    baseline_rates: list[float] = []
    for _ in range(args.repeats):  # interleaved, so drift in machine load hits both sides alike
        engine_rates.append(evals_per_second(engine, payloads))
        baseline_rates.append(evals_per_second(baseline, payloads))
    engine_rate, baseline_rate = max(engine_rates), max(baseline_rates)
    # Regex leaves cost the same RE2 call on both sides and so pull the ratio towards 1; the
    # regex-free subset shows the engine's overhead on its own.
    plain = [position for position, rule in enumerate(rules) if '"regex"' not in json.dumps(rule)]
    plain_engine = [engine[position] for position in plain]
    plain_baseline = [baseline[position] for position in plain]
    plain_engine_rate = max(evals_per_second(plain_engine, payloads) for _ in range(args.repeats))
    plain_baseline_rate = max(evals_per_second(plain_baseline, payloads) for _ in range(args.repeats))
    ratio = engine_rate / baseline_rate
    verdict = "PASS" if ratio >= TARGET_RATIO else "FAIL"

    evaluations = len(rules) * len(payloads)
    print(
        f"workload: {len(rules)} rules ({leaves} leaves), {len(payloads)} payloads, "
        f"{evaluations} evaluations per pass, {fired / evaluations:.1%} fire; "
        f"compile {compile_seconds * 1e3 / len(rules):.3f} ms/rule; best of {args.repeats} passes"
    )
    print(
        f"regex-free subset ({len(plain)} rules): engine={plain_engine_rate:.0f} evals/s "
        f"baseline={plain_baseline_rate:.0f} evals/s ratio={plain_engine_rate / plain_baseline_rate:.2f}"
    )
    print(
        f"rules: engine={engine_rate:.0f} evals/s baseline={baseline_rate:.0f} evals/s "
        f"ratio={ratio:.2f} target>={TARGET_RATIO:.2f} {verdict}"
    )
    return 1 if args.strict and verdict == "FAIL" else 0


if __name__ == "__main__":
    sys.exit(main())
