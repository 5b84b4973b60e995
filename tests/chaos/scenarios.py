"""The fault scenarios: each a load, a fault injected while deliveries and retries are in flight, and
the duplicates at the receiver it documents as possible (0 unless the comment says why)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from tests.chaos.harness import FaultPlan, Load, Run
from tests.support.chaos_stack import SERVICES, ChaosStack

ATTEMPT_TIMEOUT_SECONDS = 5.0
"""The dispatcher's default whole-attempt bound (`AFORO_DISPATCHER_ATTEMPT_TIMEOUT_SECONDS`)."""

PER_ENDPOINT_CONCURRENCY = 8
"""The dispatcher's default attempts in flight per endpoint: what a SIGKILL can cut between a
receiver's 2xx and its record (those are sent again: the documented at-least-once duplicates)."""


KAFKA_DOWN_SECONDS = 35.0


@dataclass(frozen=True)
class Scenario:
    name: str
    load: Load
    fault: FaultPlan
    short: bool = False
    """Part of the short form that `make test` runs."""
    short_records: int | None = None
    allowed_duplicates: int = 0
    prepare: Callable[[ChaosStack], Awaitable[None]] | None = None
    cleanup: Callable[[ChaosStack], Awaitable[None]] | None = None
    why_duplicates: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)


async def expect_not_ready(run: Run, name: str, check: str, timeout: float = 30) -> None:
    """Item 3: while a dependency is gone, the process's /readyz is 503 and names the failing check."""
    deadline = time.monotonic() + timeout
    last: tuple[int, dict[str, object]] = (0, {})
    while time.monotonic() < deadline:
        last = await run.stack.readiness(name)
        status, body = last
        checks = body.get("checks")
        if status == 503 and isinstance(checks, dict) and checks.get(check) is False:
            return
        await asyncio.sleep(0.25)
    run.problems.append(f"{name} /readyz did not name {check!r} as failing within {timeout} s: {last}")


async def expect_ready(run: Run, name: str) -> None:
    status, body = await run.stack.readiness(name)
    if status != 200:
        run.problems.append(f"{name} /readyz {status} {body} though none of its dependencies is down")


async def hold(run: Run, began: float, seconds: float) -> None:
    """Keep the fault in place until `seconds` after it began (the fault's length, not a wait)."""
    await asyncio.sleep(max(0.0, seconds - (time.monotonic() - began)))


# -- dependencies --------------------------------------------------------------------------------


async def mongodb_sigkill(run: Run) -> None:
    """The issue's scenario: SecantusDB SIGKILLed 1 s into the stream, restarted 4 s later."""
    await run.until_elapsed(1.0)
    await run.stack.sigkill("mongodb")
    await asyncio.sleep(4.0)
    await run.stack.restart("mongodb")
    run.fault_ended()


async def mongodb_down_30s(run: Run) -> None:
    await run.until_elapsed(1.0)
    began = time.monotonic()
    await run.stack.sigterm("mongodb")
    await expect_not_ready(run, "trigger", "mongodb")
    await expect_ready(run, "bridge")  # the bridge does not use MongoDB: it keeps translating
    await hold(run, began, 30.0)
    await run.stack.restart("mongodb")
    run.fault_ended()


def kafka_stopped(sig: str) -> FaultPlan:
    async def fault(run: Run) -> None:
        await run.until_elapsed(1.5)
        began = time.monotonic()
        if sig == "SIGKILL":
            await run.stack.sigkill("kafka")
        else:
            await run.stack.sigterm("kafka", timeout=90)
        for name in ("bridge", "trigger"):
            await expect_not_ready(run, name, "kafka")
        # Longer than a producer's 30 s request timeout: batches sent before the fault expire, the
        # case that left aiokafka's idempotent producers stuck on OutOfOrderSequenceNumber.
        await hold(run, began, KAFKA_DOWN_SECONDS)
        await run.stack.restart("kafka")
        run.fault_ended()

    return fault


# -- processes -----------------------------------------------------------------------------------


def service_sigkilled(name: str) -> FaultPlan:
    async def fault(run: Run) -> None:
        await run.until_elapsed(1.0)
        run.restarted.add(name)
        await run.stack.sigkill(name)
        await run.stack.restart(name)
        run.fault_ended()

    return fault


async def rolling_restart(run: Run) -> None:
    """SIGTERM each service in turn under load; the next goes once the previous is ready again."""
    await run.until_elapsed(1.0)
    for name in SERVICES:
        run.restarted.add(name)
        await run.stack.sigterm(name)
        await run.stack.restart(name)
        await run.stack.wait_ready([name])
    run.fault_ended()


async def receiver_hangs(run: Run) -> None:
    """The receiver is the fault: no process is touched."""
    run.fault_ended()


EXTRA_DISPATCHER = "dispatcher-2"


async def start_second_dispatcher(stack: ChaosStack) -> None:
    stack.start_extra_dispatcher(EXTRA_DISPATCHER)
    await stack.wait_ready([EXTRA_DISPATCHER], timeout=120)


async def back_to_one_dispatcher(stack: ChaosStack) -> None:
    await stack.restart("dispatcher")
    await stack.wait_ready(["dispatcher"])
    if stack.pid(EXTRA_DISPATCHER) is not None:
        await stack.sigterm(EXTRA_DISPATCHER)


async def one_of_two_dispatchers_killed(run: Run) -> None:
    """The surviving replica takes over the killed one's partitions (after the session timeout)."""
    await run.until_elapsed(1.0)
    run.left_down.add("dispatcher")
    await run.stack.sigkill("dispatcher")
    run.fault_ended()


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("mongodb-sigkill", Load(150), mongodb_sigkill, short=True, short_records=150),
    Scenario("mongodb-down-30s", Load(150, custom_rule=True), mongodb_down_30s),
    # The short form stops the broker with SIGTERM: the case that left the bridge's and the trigger's
    # producers stuck on OutOfOrderSequenceNumber (a SIGKILL of the same length did not).
    Scenario(
        "kafka-sigterm", Load(150, custom_rule=True), kafka_stopped("SIGTERM"), short=True, short_records=60
    ),
    Scenario("kafka-sigkill", Load(150, custom_rule=True), kafka_stopped("SIGKILL")),
    Scenario("bridge-sigkill", Load(150), service_sigkilled("bridge")),
    Scenario("trigger-sigkill", Load(150, custom_rule=True), service_sigkilled("trigger")),
    Scenario(
        "dispatcher-sigkill",
        Load(150),
        service_sigkilled("dispatcher"),
        short=True,
        short_records=60,
        allowed_duplicates=PER_ENDPOINT_CONCURRENCY,
        why_duplicates="an attempt whose 2xx arrived but whose record the killed process never wrote",
    ),
    Scenario("api-sigkill", Load(150, custom_rule=True, emits=30), service_sigkilled("api")),
    Scenario("sse-gateway-sigkill", Load(150), service_sigkilled("sse_gateway")),
    Scenario(
        "rolling-sigterm",
        Load(300, rate_per_second=8.0, custom_rule=True, emits=30),
        rolling_restart,
    ),
    Scenario(
        "receiver-hangs",
        Load(
            40,
            rate_per_second=20.0,
            fail_every=0,
            receiver_plan={"hangFirstSeconds": ATTEMPT_TIMEOUT_SECONDS + 3},
        ),
        receiver_hangs,
        allowed_duplicates=40,
        why_duplicates="the receiver answers 200 after the dispatcher gave up waiting: it is sent again",
    ),
    Scenario(
        "two-dispatchers-one-killed",
        Load(150),
        one_of_two_dispatchers_killed,
        allowed_duplicates=PER_ENDPOINT_CONCURRENCY,
        prepare=start_second_dispatcher,
        cleanup=back_to_one_dispatcher,
        why_duplicates="as dispatcher-sigkill",
    ),
)
