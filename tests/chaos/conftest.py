"""The fault suite's stack: `deploy/local/stack.sh` started on its own directory and ports, once per
module (so it is gone before the rest of `make test` runs), with a webhook receiver process and a
MongoDB client for the ledgers.

`make chaos` sets AFORO_CHAOS=full and runs every scenario; otherwise (inside `make test`) only the
short form runs. The table of every ledger is printed at the end and written to
`.local/chaos/table.md` (docs/reliability.md shows it).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from collections.abc import AsyncIterator, Iterator

import pytest

from aforo.shared.mongo import MongoStore
from tests.chaos.harness import SOURCE_TOPIC
from tests.chaos.ledger import Ledger, table
from tests.support.chaos_stack import ChaosStack
from tests.support.kafka import create_topics
from tests.support.receiver import Receiver
from tests.support.stack import ROOT

FULL = os.environ.get("AFORO_CHAOS") == "full"
LEDGERS: list[Ledger] = []
REPORT_DIR = ROOT / ".local" / "chaos"

STACK_SETTINGS = {
    # A claimed attempt whose process died is taken over after the lease: 10 s rather than the
    # production 30 s keeps the suite short; still twice the 5 s attempt timeout.
    "AFORO_DISPATCHER_LEASE_SECONDS": "10",
    "AFORO_SHUTDOWN_GRACE_SECONDS": "15",
}


@pytest.fixture(scope="module")
def chaos_stack() -> Iterator[ChaosStack]:
    stack = ChaosStack.create(ROOT / ".local" / f"chaos-stack-{os.getpid()}", **STACK_SETTINGS)
    # The suite's own clients log every failed reconnect while it breaks the broker on purpose.
    aiokafka_logger = logging.getLogger("aiokafka")
    level = aiokafka_logger.level
    aiokafka_logger.setLevel(logging.CRITICAL)
    try:
        stack.start_dependencies()
        # The producer topic exists before the bridge subscribes, as in production.
        asyncio.run(create_topics(stack.kafka_bootstrap, [SOURCE_TOPIC]))
        stack.start_services()
        yield stack
    finally:
        aiokafka_logger.setLevel(level)
        stack.down()
        # Keep the processes' logs for a post-mortem; the broker data and database go.
        logs = REPORT_DIR / "last-logs"
        shutil.rmtree(logs, ignore_errors=True)
        REPORT_DIR.mkdir(parents=True, exist_ok=True)
        if (stack.directory / "logs").exists():
            (stack.directory / "logs").rename(logs)
        if not os.environ.get("AFORO_TEST_KEEP_STACK"):
            shutil.rmtree(stack.directory, ignore_errors=True)


@pytest.fixture(scope="module")
async def chaos_receiver() -> AsyncIterator[Receiver]:
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    receiver = await Receiver(REPORT_DIR).start()
    try:
        yield receiver
    finally:
        receiver.stop()


@pytest.fixture(scope="module")
async def chaos_mongo(chaos_stack: ChaosStack) -> AsyncIterator[MongoStore]:
    mongo = MongoStore(chaos_stack.mongo_uri, "aforo_notify", app_name="chaos-ledger")
    try:
        yield mongo
    finally:
        await mongo.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not LEDGERS:
        return
    text = table(LEDGERS)
    terminalreporter.section("fault suite ledger")
    terminalreporter.write_line(text)
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    (REPORT_DIR / "table.md").write_text(text + "\n")
