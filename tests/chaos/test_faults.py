"""The fault suite: every scenario of tests/chaos/scenarios.py on the real processes of the local
stack, judged by its ledger (see tests/chaos/ledger.py and docs/reliability.md)."""

from __future__ import annotations

import dataclasses

import pytest

from aforo.shared.mongo import MongoStore
from tests.chaos.conftest import FULL, LEDGERS
from tests.chaos.harness import run_scenario
from tests.chaos.scenarios import SCENARIOS, Scenario
from tests.support.chaos_stack import ChaosStack
from tests.support.receiver import Receiver


def selected() -> list[Scenario]:
    if FULL:
        return list(SCENARIOS)
    return [
        dataclasses.replace(scenario, load=dataclasses.replace(scenario.load, records=scenario.short_records))
        if scenario.short_records
        else scenario
        for scenario in SCENARIOS
        if scenario.short
    ]


@pytest.mark.parametrize("scenario", selected(), ids=lambda scenario: scenario.name)
async def test_nothing_lost_or_stranded(
    scenario: Scenario, chaos_stack: ChaosStack, chaos_receiver: Receiver, chaos_mongo: MongoStore
) -> None:
    if scenario.prepare is not None:
        await scenario.prepare(chaos_stack)
    try:
        ledger, run = await run_scenario(
            chaos_stack,
            chaos_receiver,
            chaos_mongo,
            scenario.name,
            scenario.load,
            scenario.fault,
            scenario.allowed_duplicates,
        )
    except Exception:
        await chaos_stack.reset_services()
        raise
    finally:
        if scenario.cleanup is not None:
            await scenario.cleanup(chaos_stack)
    LEDGERS.append(ledger)
    problems = run.problems + ledger.problems(scenario.allowed_duplicates)
    if problems:
        await chaos_stack.reset_services()
    assert not problems, "\n".join([f"{scenario.name}: {ledger}", *problems, *ledger.notes])
    assert ledger.delivered_once + ledger.delivered_more + ledger.failed == ledger.expected
    assert ledger.failed == len(run.expected_failures)
