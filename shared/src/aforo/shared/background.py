"""A service's long-running background loops, declared in one place: spawn, check, cancel and await.

Every service runs a few loops beside its request handlers (a consumer, a commit loop, a sweep). They
must be awaited when cancelled (a cancelled task that is never awaited can still be running when the
service closes its clients), and one that dies must not die quietly: it is logged at once with its
exception, and `alive()` turns False, so the liveness probe fails and the orchestrator restarts the
process. One helper for the four hand-written variants the services had (issue #13).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

from aforo.shared.logging import get_logger

log = get_logger(__name__)


class BackgroundTasks:
    def __init__(self, owner: str) -> None:
        self._owner = owner
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self._stopping = False
        self._ending: set[asyncio.Task[Any]] = set()

    def spawn(self, name: str, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run `coroutine` as the loop called `name` (one loop per name)."""
        if name in self._tasks and not self._tasks[name].done():
            coroutine.close()
            raise RuntimeError(f"{self._owner}: a loop named {name!r} is already running")
        task = asyncio.create_task(coroutine, name=f"{self._owner}:{name}")
        task.add_done_callback(self._report_end)
        self._tasks[name] = task
        return task

    def _report_end(self, task: asyncio.Task[Any]) -> None:
        if self._stopping or task.cancelled() or task in self._ending:
            return
        error = task.exception()
        if error is not None:
            log.error(
                "background_loop_died",
                owner=self._owner,
                loop=task.get_name(),
                error=repr(error)[:500],
                exc_info=error,
            )
        else:
            log.error("background_loop_ended", owner=self._owner, loop=task.get_name())

    def alive(self) -> bool:
        """Every loop is still running (a loop is meant to run until cancelled)."""
        return self._stopping or all(not task.done() for task in self._tasks.values())

    def dead(self) -> list[str]:
        return [name for name, task in self._tasks.items() if task.done() and not task.cancelled()]

    async def cancel(self, name: str) -> None:
        """Cancel one loop and wait until it has ended."""
        task = self._tasks.pop(name, None)
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def cancel_all(self) -> None:
        """Cancel every loop and wait until all have ended (what stop() must do)."""
        self._stopping = True
        for name in list(self._tasks):
            await self.cancel(name)

    async def wait(self, name: str) -> None:
        """Wait for a loop that ends by itself (a drain), then forget it."""
        task = self._tasks.get(name)
        if task is not None:
            self._ending.add(task)  # its end is expected now: not a death to report
            await task
            self._tasks.pop(name, None)
