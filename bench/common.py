"""What the benchmarks share: invoice payloads, a service process that can run under cProfile, a
baseline server in a process of its own, CPU time from /proc, and a percentile. Imported as `bench.common`: the benches run as modules (`python -m bench.run`) from the repository root."""

from __future__ import annotations

import asyncio
import math
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Self

import aiohttp
from tests.support.processes import ServiceProcess
from tests.support.stack import ROOT, free_port


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


class BaselineServer:
    """A bench module's `baseline-worker` in its own process (`python -m <module>`): an HTTP server on a
    free port, ready when its `/readyz` answers 200. The port is passed as `--port`, after `arguments`."""

    def __init__(self, module: str, name: str, log_dir: Path, arguments: Sequence[str]) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log_path = log_dir / f"{name}-baseline-{self.port}.log"
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, "baseline-worker", *arguments, "--port", str(self.port)],
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"baseline exited: {self.log_path.read_text()[-4000:]}")
                try:
                    async with session.get(f"{self.url}/readyz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
        raise RuntimeError("baseline not ready")

    def terminate(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(30)
        finally:
            self._log.close()


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
