"""The ledger of one fault scenario: what was sent in, what the receiver got, what the audit trail says.

Pure functions over plain data (receiver requests, `delivery_logs` rows, `delivery_state` documents),
so the rules that decide a scenario's verdict are tested without a broker (tests/unit/test_chaos_ledger.py).

A *delivery* is one (event, endpoint) pair, named by its ledger key `<eventType>/<chaosKey>`: the
key travels in the payload, so it also names events whose eventId the API chose (manual emits).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

FINAL_STATES = frozenset({"DELIVERED", "FAILED"})
NON_FINAL_ROWS = frozenset({"PENDING", "RETRYING"})


@dataclass(frozen=True)
class ReceivedRequest:
    key: str
    event_id: str
    status: int


@dataclass(frozen=True)
class Ledger:
    scenario: str
    expected: int
    delivered_once: int
    delivered_more: int
    failed: int
    lost: list[str]
    duplicates_at_receiver: int
    delivered_rows_doubled: list[str]
    non_final: list[str]
    unexpected_failures: list[str]
    failures_without_reason: list[str]
    delivered_without_row: list[str]
    recovery_seconds: float | None = None
    settled_seconds: float | None = None
    notes: list[str] = field(default_factory=list)

    def problems(self, allowed_duplicates: int = 0) -> list[str]:
        """Every broken promise, each a sentence with the offending deliveries (empty: the scenario holds)."""
        problems: list[str] = []

        def sample(keys: list[str]) -> str:
            return ", ".join(sorted(keys)[:10]) + (" ..." if len(keys) > 10 else "")

        if self.lost:
            problems.append(f"{len(self.lost)} deliveries lost (no 2xx, not FAILED): {sample(self.lost)}")
        if self.non_final:
            problems.append(f"{len(self.non_final)} left non-final once quiet: {sample(self.non_final)}")
        if self.delivered_rows_doubled:
            problems.append(
                f"{len(self.delivered_rows_doubled)} with more than one DELIVERED row: "
                f"{sample(self.delivered_rows_doubled)}"
            )
        if self.unexpected_failures:
            problems.append(
                f"{len(self.unexpected_failures)} FAILED that the receiver would have taken: "
                f"{sample(self.unexpected_failures)}"
            )
        if self.failures_without_reason:
            problems.append(
                f"{len(self.failures_without_reason)} FAILED without a reason: {sample(self.failures_without_reason)}"
            )
        if self.delivered_without_row:
            problems.append(
                f"{len(self.delivered_without_row)} got a 2xx but have no DELIVERED row: "
                f"{sample(self.delivered_without_row)}"
            )
        if self.duplicates_at_receiver > allowed_duplicates:
            problems.append(
                f"{self.duplicates_at_receiver} duplicates at the receiver, at most {allowed_duplicates} allowed"
            )
        return problems

    @property
    def lost_count(self) -> int:
        return len(self.lost)


def build_ledger(
    scenario: str,
    *,
    expected: Iterable[str],
    expected_failures: Iterable[str],
    received: Iterable[ReceivedRequest],
    rows: Iterable[Mapping[str, Any]],
    states: Iterable[Mapping[str, Any]],
    key_of_event_id: Mapping[str, str],
) -> Ledger:
    """Judge a scenario from what arrived and what was recorded.

    `expected` are the deliveries that must end DELIVERED or FAILED; `expected_failures` those the
    receiver refuses on every attempt (they must end FAILED with a reason). `key_of_event_id` maps
    the audit trail's eventIds to ledger keys; rows and states of events outside it are ignored.
    """
    expected_keys = set(expected)
    must_fail = set(expected_failures)

    successes: Counter[str] = Counter(request.key for request in received if 200 <= request.status <= 299)

    rows_by_key: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        key = key_of_event_id.get(str(row.get("eventId")))
        if key is not None:
            rows_by_key[key].append(row)
    state_by_key: dict[str, str] = {}
    non_final: list[str] = []
    for state in states:
        key = key_of_event_id.get(str(state.get("eventId")))
        if key is None:
            continue
        state_by_key[key] = str(state.get("status"))
        if state_by_key[key] not in FINAL_STATES:
            non_final.append(f"{key} state={state_by_key[key]} attempt={state.get('attempt')}")

    delivered_rows: Counter[str] = Counter()
    delivered_attempts: dict[str, list[int]] = defaultdict(list)
    failed_with_reason: set[str] = set()
    failed_without_reason: list[str] = []
    for key, key_rows in rows_by_key.items():
        latest = max(key_rows, key=lambda row: int(row.get("attempt") or 0))
        if latest.get("status") in NON_FINAL_ROWS and state_by_key.get(key) not in FINAL_STATES:
            non_final.append(f"{key} row={latest.get('status')} attempt={latest.get('attempt')}")
        for row in key_rows:
            if row.get("status") == "DELIVERED":
                delivered_rows[key] += 1
                delivered_attempts[key].append(int(row.get("attempt") or 0))
            elif row.get("status") == "FAILED":
                if row.get("error") or row.get("responseStatus"):
                    failed_with_reason.add(key)
                else:
                    failed_without_reason.append(key)

    failed = {key for key in failed_with_reason | set(failed_without_reason) if not successes[key]}

    def trail(key: str) -> str:
        """What the audit trail says about a lost delivery."""
        if key not in state_by_key and not rows_by_key.get(key):
            return f"{key} (never recorded)"
        latest = max(rows_by_key.get(key) or [{}], key=lambda row: int(row.get("attempt") or 0))
        return f"{key} (state={state_by_key.get(key)}, last row={latest.get('status')} attempt {latest.get('attempt')})"

    lost = sorted(trail(key) for key in expected_keys if not successes[key] and key not in failed)
    return Ledger(
        scenario=scenario,
        expected=len(expected_keys),
        delivered_once=sum(1 for key in expected_keys if successes[key] == 1),
        delivered_more=sum(1 for key in expected_keys if successes[key] > 1),
        failed=len(failed & expected_keys),
        lost=lost,
        duplicates_at_receiver=sum(count - 1 for count in successes.values() if count > 1),
        delivered_rows_doubled=sorted(
            f"{key} (attempts {sorted(delivered_attempts[key])})"
            for key, count in delivered_rows.items()
            if count > 1
        ),
        non_final=sorted(set(non_final)),
        unexpected_failures=sorted(failed - must_fail),
        failures_without_reason=sorted(set(failed_without_reason)),
        delivered_without_row=sorted(
            key for key in successes if key in expected_keys and not delivered_rows[key]
        ),
    )


TABLE_HEADER = (
    "| scenario | events | delivered once | failed | lost | duplicates at receiver | recovery s | settled s |"
)


def table(ledgers: Iterable[Ledger]) -> str:
    """The Markdown table the suite prints and docs/reliability.md shows."""

    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    lines = [TABLE_HEADER, "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for ledger in ledgers:
        lines.append(
            f"| {ledger.scenario} | {ledger.expected} | {ledger.delivered_once} | {ledger.failed} | "
            f"{ledger.lost_count} | {ledger.duplicates_at_receiver} | {seconds(ledger.recovery_seconds)} | "
            f"{seconds(ledger.settled_seconds)} |"
        )
    return "\n".join(lines)
