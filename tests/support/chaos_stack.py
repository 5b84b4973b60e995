"""The whole local stack as `make up` runs it (deploy/local/stack.sh), on its own directory and free
ports, with handles to break it: SIGKILL or SIGTERM one process, bring it back with the same
stack.sh command `make up` uses, and read each process's `/readyz`.

Used by the fault suite (tests/chaos). It never touches a developer's `make up` stack (other ports,
other `.local/` directory) nor the pytest session's own broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp

from aforo.shared.secret_box import generate_key
from tests.support.stack import ROOT, STACK_SCRIPT, TEST_JWT_SECRET, free_port

SERVICES = ("bridge", "trigger", "dispatcher", "api", "sse_gateway")
"""stack.sh's process names for the five services, in its start order."""

DEPENDENCIES = ("kafka", "mongodb")

START_COMMAND = {
    "kafka": "start-kafka",
    "mongodb": "start-mongo",
    **dict.fromkeys(SERVICES, "start-services"),
}
"""The stack.sh command that (re)starts a process; `start-services` starts only the ones not running."""


@dataclass
class ExtraProcess:
    """A process the suite starts beside stack.sh's (a second dispatcher replica)."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: IO[bytes]


@dataclass
class ChaosStack:
    directory: Path
    env: dict[str, str]
    ports: dict[str, int]
    extras: dict[str, ExtraProcess] = field(default_factory=dict)

    @classmethod
    def create(cls, directory: Path, **settings: str) -> ChaosStack:
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        ports = {name: free_port() for name in (*DEPENDENCIES, "controller", *SERVICES)}
        env = {
            **os.environ,
            "AFORO_LOCAL_DIR": str(directory),
            "AFORO_KAFKA_PORT": str(ports["kafka"]),
            "AFORO_KAFKA_CONTROLLER_PORT": str(ports["controller"]),
            "AFORO_MONGO_PORT": str(ports["mongodb"]),
            "AFORO_KAFKA_HEAP": "512m",
            **{f"AFORO_{name.upper()}_HTTP_PORT": str(ports[name]) for name in SERVICES},
            # Named here (stack.sh would make per-checkout ones) so the suite can sign tokens.
            "AFORO_SECRETS_ENCRYPTION_KEYS": generate_key(),
            "AFORO_API_AUTH_MODE": "hs256",
            "AFORO_API_JWT_HS256_SECRET": TEST_JWT_SECRET,
            "AFORO_SSE_GATEWAY_SESSION_SECRET": "chaos-only-sse-session-secret-of-at-least-32-bytes",
            "AFORO_DISPATCHER_OUTBOUND_ALLOWLIST": "127.0.0.1/32",  # the receiver is local
            "AFORO_TRIGGER_DATA_DIR": str(directory / "trigger-data"),
            "AFORO_LOG_JSON": "true",
            **settings,
        }
        for inherited in ("AFORO_KAFKA_BOOTSTRAP_SERVERS", "AFORO_MONGO_URI"):
            env.pop(inherited, None)  # stack.sh derives both from the ports above
        return cls(directory, env, ports)

    # -- stack.sh --------------------------------------------------------------------------------

    def stack(self, *arguments: str, timeout: float = 240) -> None:
        subprocess.run([str(STACK_SCRIPT), *arguments], env=self.env, check=True, timeout=timeout)

    async def astack(self, *arguments: str, timeout: float = 240) -> None:
        await asyncio.to_thread(self.stack, *arguments, timeout=timeout)

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.ports['kafka']}"

    @property
    def mongo_uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.ports['mongodb']}/?retryWrites=false"

    def url(self, name: str) -> str:
        port = self.extras[name].port if name in self.extras else self.ports[name]
        return f"http://127.0.0.1:{port}"

    def log_path(self, name: str) -> Path:
        return self.directory / "logs" / f"{name}.log"

    def pid(self, name: str) -> int | None:
        if name in self.extras:
            process = self.extras[name].process
            return process.pid if process.poll() is None else None
        pidfile = self.directory / "run" / f"{name}.pid"
        if not pidfile.exists():
            return None
        pid = int(pidfile.read_text().strip())
        return pid if _alive(pid) else None

    def start_dependencies(self) -> None:
        self.stack("start-kafka")
        self.stack("start-mongo")

    def start_services(self) -> None:
        self.stack("start-services")

    def down(self) -> None:
        for name in list(self.extras):
            self.kill(name, signal.SIGKILL)
        subprocess.run([str(STACK_SCRIPT), "down"], env=self.env, check=False, timeout=300)

    # -- faults ----------------------------------------------------------------------------------

    def kill(self, name: str, sig: signal.Signals) -> int | None:
        """Send `sig` to the process (its whole session: Kafka's JVM, a service and its children)."""
        pid = self.pid(name)
        if pid is None:
            return None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        return pid

    async def wait_gone(self, name: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.pid(name) is not None:
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} still running {timeout} s after the signal")
            await asyncio.sleep(0.1)
        if name in self.extras:
            extra = self.extras.pop(name)
            extra.log.close()

    async def sigkill(self, name: str) -> None:
        assert self.kill(name, signal.SIGKILL) is not None, f"{name} was not running"
        await self.wait_gone(name, 30)

    async def sigterm(self, name: str, timeout: float = 60) -> None:
        """The orderly stop: SIGTERM, then wait for the drain (bounded by the grace period)."""
        assert self.kill(name, signal.SIGTERM) is not None, f"{name} was not running"
        await self.wait_gone(name, timeout)

    async def restart(self, name: str) -> None:
        """Start it again the way `make up` does (stack.sh only starts what is not running)."""
        await self.astack(START_COMMAND[name])

    async def reset_services(self) -> None:
        """After a failed scenario: start every service afresh, so the next scenario does not inherit
        a process the fault left broken (its failure is already on record)."""
        for name in SERVICES:
            if self.pid(name) is not None:
                await self.sigkill(name)
        await self.astack("start-services")
        await self.wait_ready(list(SERVICES))

    def start_extra_dispatcher(self, name: str) -> None:
        """Another dispatcher replica: same settings and consumer groups, its own HTTP port."""
        port = free_port()
        log = self.log_path(name).open("ab")
        env = {
            **self.env,
            "AFORO_KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap,
            "AFORO_MONGO_URI": self.mongo_uri,
            "AFORO_DISPATCHER_HTTP_PORT": str(port),
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "aforo.dispatcher"],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.extras[name] = ExtraProcess(name, port, process, log)

    # -- readiness -------------------------------------------------------------------------------

    async def readiness(self, name: str) -> tuple[int, dict[str, Any]]:
        """`/readyz` of one process: (status, body); (0, {}) when it does not answer at all."""
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"{self.url(name)}/readyz", timeout=aiohttp.ClientTimeout(total=5)) as response,
            ):
                body = await response.json(content_type=None)
                return response.status, body if isinstance(body, dict) else {}
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return 0, {}

    async def wait_ready(self, names: tuple[str, ...] | list[str] = SERVICES, timeout: float = 150) -> float:
        """Wait until every named process answers /readyz 200; returns the seconds it took."""
        began = time.monotonic()
        pending = list(names)
        while True:
            answers = dict(
                zip(pending, await asyncio.gather(*(self.readiness(name) for name in pending)), strict=True)
            )
            pending = [name for name, (status, _) in answers.items() if status != 200]
            if not pending:
                break
            if time.monotonic() - began > timeout:
                detail = {name: answers[name] for name in pending}
                raise AssertionError(f"not ready after {timeout} s: /readyz {detail}")
            await asyncio.sleep(0.25)
        return time.monotonic() - began

    def log_lines_since(self, name: str, offset: int, needles: tuple[str, ...]) -> list[str]:
        path = self.log_path(name)
        if not path.exists():
            return []
        with path.open("rb") as handle:
            handle.seek(offset)
            text = handle.read().decode(errors="replace")
        return [line for line in text.splitlines() if any(needle in line for needle in needles)]

    def log_offsets(self) -> dict[str, int]:
        return {
            name: self.log_path(name).stat().st_size if self.log_path(name).exists() else 0
            for name in (*SERVICES, *self.extras)
        }


def _alive(pid: int) -> bool:
    """Running and not a zombie (pid 1 of some containers never reaps the processes stack.sh orphans)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError, ProcessLookupError):
        return False
    return state != "Z"
