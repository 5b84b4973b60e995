"""Headless Chromium (Debian's `chromium`) driven over the Chrome DevTools Protocol with aiohttp.

Just what the embed SDK's browser tests need: open a page, evaluate JavaScript in the page or in
one of its frames (chosen by origin), and wait for a condition with a deadline. No new dependency:
the protocol is JSON over one websocket.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = os.environ.get("AFORO_TEST_CHROMIUM", "/usr/bin/chromium")
FLAGS = (
    "--headless",
    "--no-sandbox",  # the suite runs as root on CI machines
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--remote-debugging-port=0",
)


class DevToolsError(RuntimeError):
    """A protocol command failed, or the page's JavaScript threw."""


class Page:
    """One tab, attached with a flat session; execution contexts tracked by frame origin."""

    def __init__(self, browser: Chromium, target_id: str, session_id: str) -> None:
        self.browser = browser
        self.target_id = target_id
        self.session_id = session_id
        self.contexts: dict[str, int] = {}  # origin → the newest default context of a frame of that origin
        self.console: list[str] = []

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        return await self.browser.send(method, session_id=self.session_id, **params)

    def on_event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Runtime.executionContextCreated":
            context = params["context"]
            if context.get("auxData", {}).get("isDefault") and context.get("origin"):
                self.contexts[context["origin"]] = context["id"]
        elif method == "Runtime.consoleAPICalled":
            text = " ".join(
                str(arg.get("value", arg.get("description", ""))) for arg in params.get("args", [])
            )
            self.console.append(f"{params.get('type')}: {text}")
        elif method == "Runtime.exceptionThrown":
            self.console.append(f"exception: {params['exceptionDetails'].get('text')}")

    async def evaluate(self, expression: str, origin: str | None = None) -> Any:
        """The value of `expression` (promises awaited), in the top page or the frame of `origin`."""
        params: dict[str, Any] = {"expression": expression, "awaitPromise": True, "returnByValue": True}
        if origin is not None:
            if origin not in self.contexts:
                raise DevToolsError(f"no frame of origin {origin} (have {sorted(self.contexts)})")
            params["contextId"] = self.contexts[origin]
        result = await self.send("Runtime.evaluate", **params)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            description = details.get("exception", {}).get("description") or details.get("text")
            raise DevToolsError(f"{expression!r} threw: {description}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, origin: str | None = None, timeout: float = 10.0) -> Any:
        """Poll until `expression` is truthy; its value."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            with contextlib.suppress(DevToolsError):
                last = await self.evaluate(expression, origin)
                if last:
                    return last
            await asyncio.sleep(0.05)
        raise AssertionError(
            f"{expression!r} still {last!r} after {timeout} s; console: {self.console[-10:]}"
        )

    async def wait_for_frame(self, origin: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while origin not in self.contexts:
            if time.monotonic() > deadline:
                raise AssertionError(f"no frame of {origin} after {timeout} s")
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        await self.browser.send("Target.closeTarget", targetId=self.target_id)
        self.browser.pages.pop(self.session_id, None)


def _start_chromium(timeout: float) -> tuple[subprocess.Popen[bytes], Path, str]:
    """Start chromium with a fresh profile; its DevTools websocket address once it listens."""
    if not Path(CHROMIUM).exists():
        raise AssertionError("chromium is missing: `make test` installs Debian's chromium package")
    profile = Path(tempfile.mkdtemp(prefix="aforo-chromium-"))
    process = subprocess.Popen(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=(profile / "chromium.log").open("wb"),
    )
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout
    while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            log = (profile / "chromium.log").read_text(errors="replace")[-2000:]
            raise AssertionError(f"chromium did not start its DevTools endpoint: {log}")
        time.sleep(0.05)
    port, path = port_file.read_text().splitlines()[:2]
    return process, profile, f"ws://127.0.0.1:{port}{path}"


class Chromium:
    def __init__(
        self,
        process: subprocess.Popen[bytes],
        profile: Path,
        websocket: aiohttp.ClientWebSocketResponse,
        http: aiohttp.ClientSession,
    ) -> None:
        self.process = process
        self.profile = profile
        self.websocket = websocket
        self.http = http
        self.pages: dict[str, Page] = {}
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def launch(cls, timeout: float = 30.0) -> Chromium:
        process, profile, endpoint = await asyncio.to_thread(_start_chromium, timeout)
        http = aiohttp.ClientSession()
        websocket = await http.ws_connect(endpoint, max_msg_size=0)
        return cls(process, profile, websocket, http)

    async def _read(self) -> None:
        async for message in self.websocket:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            data = message.json()
            if "id" in data:
                future = self._pending.pop(data["id"], None)
                if future is not None and not future.done():
                    if "error" in data:
                        future.set_exception(DevToolsError(str(data["error"])))
                    else:
                        future.set_result(data.get("result", {}))
            elif "sessionId" in data and data["sessionId"] in self.pages:
                self.pages[data["sessionId"]].on_event(data["method"], data.get("params", {}))

    async def send(self, method: str, session_id: str | None = None, **params: Any) -> dict[str, Any]:
        command_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[command_id] = future
        message: dict[str, Any] = {"id": command_id, "method": method, "params": params}
        if session_id is not None:
            message["sessionId"] = session_id
        await self.websocket.send_json(message)
        return await asyncio.wait_for(future, 30)

    async def open(self, url: str) -> Page:
        """A new tab at `url`, with Runtime events on (frames' contexts are known as they appear)."""
        target = await self.send("Target.createTarget", url="about:blank")
        attached = await self.send("Target.attachToTarget", targetId=target["targetId"], flatten=True)
        page = Page(self, target["targetId"], attached["sessionId"])
        self.pages[page.session_id] = page
        await page.send("Runtime.enable")
        await page.send("Page.enable")
        await page.send("Page.navigate", url=url)
        return page

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self.websocket.close()
        await self.http.close()
        self.process.terminate()
        try:
            await asyncio.to_thread(self.process.wait, 10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Chromium]:
    browser = await Chromium.launch()
    try:
        yield browser
    finally:
        await browser.close()
