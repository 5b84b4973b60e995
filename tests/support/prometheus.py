"""A real Prometheus server (Debian's package) scraping test processes, and promtool's linter."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from pathlib import Path
from typing import IO, Any

import aiohttp

from tests.support.stack import free_port


def promtool_problems(exposition: str) -> str:
    """`promtool check metrics` on an exposition body: empty when it is clean."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make test` installs Debian's prometheus package"
    result = subprocess.run([promtool, "check", "metrics"], input=exposition, capture_output=True, text=True)
    # promtool exits 1 for lint warnings (e.g. help text) too; report everything it says.
    return (result.stdout + result.stderr).strip() if result.returncode != 0 else ""


class PrometheusServer:
    def __init__(self, targets: list[str], directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.targets = targets
        self._log: IO[bytes] | None = None
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> PrometheusServer:
        binary = shutil.which("prometheus")
        assert binary, "prometheus is missing: `make test` installs Debian's prometheus package"
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "prometheus.yml"
        quoted = ", ".join(f"'{target}'" for target in self.targets)
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            f"scrape_configs:\n  - job_name: aforo\n    static_configs:\n      - targets: [{quoted}]\n"
        )
        self._log = (self.directory / "prometheus.log").open("ab")
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        return self

    async def query(self, promql: str) -> list[dict[str, Any]]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{self.port}/api/v1/query", params={"query": promql}) as response,
        ):
            body = await response.json()
            result: list[dict[str, Any]] = body["data"]["result"]
            return result

    async def wait_all_up(self, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Every target scraped successfully (`up == 1`), as Prometheus itself reports it."""
        deadline = time.monotonic() + timeout
        last: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            try:
                last = await self.query("up")
            except (aiohttp.ClientError, KeyError):
                last = []
            if len(last) == len(self.targets) and all(sample["value"][1] == "1" for sample in last):
                return last
            await asyncio.sleep(0.5)
        raise AssertionError(f"prometheus did not scrape every target: {last}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(15)
        if self._log is not None:
            self._log.close()
