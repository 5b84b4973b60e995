"""What the benchmarks share: invoice payloads, a service process that can run under cProfile, a bench's
own helper processes (baseline, receiver, server) run as `python -m bench.<module> <role>`, the stack,
profiles, CPU time from /proc, and a percentile. Imported as `bench.common`: the benches run as modules
(`python -m bench.run`) from the repository root."""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import math
import os
import pstats
import random
import signal
import subprocess
import sys
import time
from collections.abc import Coroutine, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, Self

import aiohttp
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from tests.support.processes import ServiceProcess
from tests.support.stack import ROOT, LocalStack, free_port

PROFILE_TOP = 30


def invoice_fields(rng: random.Random, sequence: int, issued: datetime) -> dict[str, Any]:
    """The amounts, dates and 1-3 lines of a billing invoice, drawn from `rng`; callers add who it is
    for and its ids."""
    lines: list[dict[str, Any]] = []
    for _ in range(rng.randint(1, 3)):
        quantity = rng.randint(1, 5000)
        unit_amount = rng.choice((1, 5, 12, 250, 1999))
        lines.append(
            {
                "sku": rng.choice(("api-calls", "storage-gb", "seats", "egress-gb", "support-plan")),
                "quantity": quantity,
                "unitAmount": unit_amount,
                "amount": quantity * unit_amount,
            }
        )
    subtotal = sum(line["amount"] for line in lines)
    tax = subtotal * rng.choice((0, 7, 19, 20)) // 100
    return {
        "invoiceNumber": f"INV-{issued.year}-{sequence:07d}",
        "currency": rng.choice(("USD", "EUR", "GBP")),
        "subtotal": subtotal,
        "tax": tax,
        "amountDue": subtotal + tax,
        "periodStart": (issued - timedelta(days=30)).date().isoformat(),
        "periodEnd": issued.date().isoformat(),
        "dueDate": (issued + timedelta(days=14)).date().isoformat(),
        "lines": lines,
    }


class ProfiledServiceProcess(ServiceProcess):
    """A real service process (`python -m <module>`), optionally under `python -m cProfile`.

    cProfile writes its stats when main() returns, which a service does on SIGTERM after draining.
    """

    def __init__(
        self, module: str, env_prefix: str, env: dict[str, str], log_dir: Path, profile: Path | None
    ) -> None:
        super().__init__(module, env_prefix, env, log_dir)
        self.profile_path = profile

    def start(self) -> Self:
        if self.profile_path is None:
            super().start()
            return self
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cProfile", "-o", str(self.profile_path), "-m", self.module],
            env=self.env,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def failure(self) -> str | None:
        """None while it runs; once it has exited, its exit code and the end of its log."""
        assert self.process is not None
        if self.process.poll() is None:
            return None
        name = self.module.rsplit(".", 1)[-1]
        return f"{name} exited with {self.process.returncode}:\n{self.log_text()[-4000:]}"


class WorkerProcess:
    """`python -m <module> <role> <arguments>`: a bench's helper (baseline, receiver, server) in a process
    of its own, started from the repository root, its output in `log_path`. One that `exits_by_itself`
    (a baseline that sends a fixed number of events) is waited for, not sent SIGTERM."""

    def __init__(
        self,
        module: str,
        role: str,
        arguments: Sequence[str],
        log_path: Path,
        *,
        exits_by_itself: bool = False,
    ) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.role = role
        self.log_path = log_path
        self.exits_by_itself = exits_by_itself
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, role, *arguments],
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def failure(self) -> str | None:
        """None while it runs (or once it has exited 0, if it exits by itself); else its exit code and the
        end of its log."""
        code = self.process.poll()
        if code is None or (self.exits_by_itself and code == 0):
            return None
        return f"{self.role} exited with {code}: {self.log_path.read_text(errors='replace')[-4000:]}"

    async def wait_listening(self, port: int, timeout: float = 30.0) -> None:
        """Until 127.0.0.1:`port` accepts a connection; fails when the process exits first or the deadline
        passes (a loaded machine can take seconds to import and bind)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.role} exited before listening on {port}: {self.failure()}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            writer.close()
            await writer.wait_closed()
            return
        raise RuntimeError(f"{self.role} not listening on {port} after {timeout:.0f} s; see {self.log_path}")

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM (unless it exits by itself) and wait; killed when still running after `timeout`."""
        if not self.exits_by_itself and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(10)
            self._log.close()


class BaselineServer(WorkerProcess):
    """A bench module's `baseline-worker` as an HTTP server on a free port, ready when its `/readyz`
    answers 200. The port is passed as `--port`, after `arguments`."""

    def __init__(self, module: str, name: str, log_dir: Path, arguments: Sequence[str]) -> None:
        self.port = free_port()
        super().__init__(
            module,
            "baseline-worker",
            [*arguments, "--port", str(self.port)],
            log_dir / f"{name}-baseline-{self.port}.log",
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                problem = self.failure()
                if problem:
                    raise RuntimeError(problem)
                try:
                    async with session.get(f"{self.url}/readyz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
        raise RuntimeError(f"baseline not ready after {timeout:.0f} s; see {self.log_path}")


class MeasuredProcess(Protocol):
    """What a bench's measuring loop needs of either side (the service or its baseline)."""

    log_path: Path

    @property
    def pid(self) -> int: ...

    def failure(self) -> str | None: ...

    def terminate(self, timeout: float = 30.0) -> int: ...


def stop_on_signals() -> asyncio.Event:
    """An event that SIGTERM or SIGINT sets: how a helper process hears that the bench is done with it."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


def run_profiled(run: Coroutine[Any, Any, None], profile: Path | None) -> int:
    """`asyncio.run(run)` (a helper process's main), under cProfile dumping to `profile` when given."""
    if profile is None:
        asyncio.run(run)
        return 0
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        asyncio.run(run)
    finally:
        profiler.disable()
        profiler.dump_stats(profile)
    return 0


def print_profile(name: str, process: str, path: Path, top: int = PROFILE_TOP) -> None:
    """The top functions of a cProfile dump, by own and by cumulative time."""
    print(f"\n{name}: cProfile of the {process} ({path}), top {top} by own time:", flush=True)
    stats = pstats.Stats(str(path), stream=sys.stdout)
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    print(f"{name}: cProfile of the {process}, top {top} by cumulative time:", flush=True)
    stats.sort_stats("cumulative").print_stats(top)
    sys.stdout.flush()


def add_profile_option(parser: argparse.ArgumentParser, help_text: str) -> None:
    """`--profile`, on by default under `python -m bench.run --profile` (AFORO_BENCH_PROFILE=1)."""
    parser.add_argument(
        "--profile",
        action="store_true",
        default=os.environ.get("AFORO_BENCH_PROFILE", "") not in ("", "0"),
        help=help_text,
    )


@contextmanager
def bench_stack() -> Iterator[LocalStack]:
    """The stack named by AFORO_TEST_KAFKA_BOOTSTRAP/AFORO_TEST_MONGO_URI (`bench.run` sets them), else a
    private one under `.local/`, stopped on the way out."""
    existing = LocalStack.from_environment()
    stack = existing or LocalStack.start()
    try:
        yield stack
    finally:
        if existing is None:
            stack.stop()


def summary(line: str, met: bool, strict: bool) -> int:
    """Print the summary line `bench.run` parses (`<name>: ... ratio: X ... PASS|FAIL`); the exit code
    is 1 only for a missed target under `--strict` (a crash is the only other failure)."""
    print(line, flush=True)
    return 1 if strict and not met else 0


async def delete_topics(name: str, bootstrap: str, prefix: str) -> None:
    """Best effort: a shared broker (AFORO_TEST_*) should not keep a bench's records."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="aforo-bench")
    await admin.start()
    try:
        topics = [topic for topic in await admin.list_topics() if topic.startswith(prefix)]
        if topics:
            await admin.delete_topics(topics)
    except KafkaError as error:
        print(f"{name}: note: could not delete the bench topics: {error!r}", flush=True)
    finally:
        await admin.close()


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far, from /proc (Linux); None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: Iterable[float], fraction: float) -> float:
    """Nearest-rank percentile (the smallest value with at least `fraction` of them at or below it)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]
