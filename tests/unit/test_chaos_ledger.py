"""The fault suite's verdict rules (tests/chaos/ledger.py), on plain data: no broker, no database."""

from __future__ import annotations

from typing import Any

import pytest

from tests.chaos.ledger import ReceivedRequest, build_ledger, table

KEYS = {"e1": "INVOICE_GENERATED/e1", "e2": "INVOICE_GENERATED/e2", "e3": "INVOICE_GENERATED/e3"}


def row(event_id: str, attempt: int, status: str, **fields: Any) -> dict[str, Any]:
    return {"eventId": event_id, "attempt": attempt, "status": status, **fields}


def state(event_id: str, status: str, attempt: int = 1) -> dict[str, Any]:
    return {"eventId": event_id, "status": status, "attempt": attempt}


def ledger(received: list[tuple[str, int]], rows: list[dict[str, Any]], states: list[dict[str, Any]]) -> Any:
    return build_ledger(
        "s",
        expected=KEYS.values(),
        expected_failures={"INVOICE_GENERATED/e3"},
        received=[ReceivedRequest(KEYS[event_id], event_id, status) for event_id, status in received],
        rows=rows,
        states=states,
        key_of_event_id=KEYS,
    )


HEALTHY_ROWS = [
    row("e1", 1, "RETRYING", responseStatus=500),
    row("e1", 2, "DELIVERED"),
    row("e2", 1, "DELIVERED"),
    row("e3", 3, "FAILED", error="HTTP 500", responseStatus=500),
]
HEALTHY_STATES = [state("e1", "DELIVERED", 2), state("e2", "DELIVERED"), state("e3", "FAILED", 3)]


def test_a_healthy_run_has_no_problems() -> None:
    result = ledger([("e1", 500), ("e1", 200), ("e2", 200), ("e3", 500)], HEALTHY_ROWS, HEALTHY_STATES)
    assert result.problems() == []
    assert (result.expected, result.delivered_once, result.failed, result.lost_count) == (3, 2, 1, 0)
    assert result.duplicates_at_receiver == 0


def test_a_delivery_stranded_retrying_is_lost_and_non_final() -> None:
    rows = [row("e1", 1, "RETRYING", responseStatus=500), *HEALTHY_ROWS[2:]]
    states = [state("e1", "RETRYING"), *HEALTHY_STATES[1:]]
    result = ledger([("e1", 500), ("e2", 200), ("e3", 500)], rows, states)
    assert result.lost == ["INVOICE_GENERATED/e1 (state=RETRYING, last row=RETRYING attempt 1)"]
    assert any("e1" in entry and "RETRYING" in entry for entry in result.non_final)
    problems = result.problems()
    assert any("lost" in problem for problem in problems)
    assert any("non-final" in problem for problem in problems)


@pytest.mark.parametrize(("allowed", "broken"), [(0, True), (1, False)])
def test_duplicates_at_the_receiver_are_counted_against_the_allowance(allowed: int, broken: bool) -> None:
    result = ledger(
        [("e1", 500), ("e1", 200), ("e1", 200), ("e2", 200), ("e3", 500)], HEALTHY_ROWS, HEALTHY_STATES
    )
    assert result.duplicates_at_receiver == 1
    assert result.delivered_more == 1
    assert bool(result.problems(allowed)) is broken


def test_two_delivered_rows_and_a_reasonless_failure_are_problems() -> None:
    rows = [*HEALTHY_ROWS[:2], row("e2", 1, "DELIVERED"), row("e2", 2, "DELIVERED"), row("e3", 3, "FAILED")]
    result = ledger([("e1", 200), ("e2", 200), ("e3", 500)], rows, HEALTHY_STATES)
    assert result.delivered_rows_doubled == ["INVOICE_GENERATED/e2 (attempts [1, 2])"]
    assert result.failures_without_reason == ["INVOICE_GENERATED/e3"]


def test_a_failure_the_receiver_did_not_cause_and_a_2xx_without_its_row_are_problems() -> None:
    rows = [row("e1", 3, "FAILED", error="timeout"), row("e3", 3, "FAILED", error="HTTP 500")]
    states = [state("e1", "FAILED", 3), state("e2", "DELIVERED"), state("e3", "FAILED", 3)]
    result = ledger([("e2", 200), ("e3", 500)], rows, states)
    assert result.unexpected_failures == ["INVOICE_GENERATED/e1"]
    assert result.delivered_without_row == ["INVOICE_GENERATED/e2"]


def test_the_table_has_one_line_per_scenario() -> None:
    result = ledger([("e1", 200), ("e2", 200), ("e3", 500)], HEALTHY_ROWS, HEALTHY_STATES)
    lines = table([result, result]).splitlines()
    assert lines[0].startswith(
        "| scenario | events | delivered once | failed | lost | duplicates at receiver"
    )
    assert len(lines) == 4
    assert lines[2].startswith("| s | 3 | 2 | 1 | 0 | 0 |")
