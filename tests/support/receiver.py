"""Drives the webhook receiver process (tests.support.webhook_receiver) from a test."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import aiohttp

from tests.support.stack import ROOT, free_port


class Receiver:
    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.log_path = log_dir / f"receiver-{self.port}.log"
        self._log: IO[bytes] | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def hook_url(self, name: str) -> str:
        return f"{self.base_url}/hooks/{name}"

    async def start(self) -> Receiver:
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.webhook_receiver", "--port", str(self.port)],
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                try:
                    async with session.get(f"{self.base_url}/healthz") as response:
                        if response.status == 200:
                            return self
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
        raise AssertionError("webhook receiver did not start")

    async def plan(self, name: str, **spec: Any) -> None:
        async with (
            aiohttp.ClientSession() as session,
            session.put(f"{self.base_url}/_plans/{name}", json=spec) as r,
        ):
            assert r.status == 204

    async def received(self, name: str) -> list[dict[str, Any]]:
        async with aiohttp.ClientSession() as session, session.get(f"{self.base_url}/_received/{name}") as r:
            items: list[dict[str, Any]] = await r.json()
            return items

    async def wait_for(self, name: str, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            items = await self.received(name)
            if len(items) >= count:
                return items
            if time.monotonic() > deadline:
                raise AssertionError(f"receiver {name}: {len(items)} requests, expected {count}")
            await asyncio.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        if self._log is not None:
            self._log.close()
