"""A SecantusDB process of a test's own, so a test can kill and restart its database without
disturbing the rest of the session's tests (which share the session stack's database); and a
database of a test's own on the session's server (`own_database`)."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import IO

from aforo.shared.mongo import CollectionIndexes, MongoStore
from tests.support.stack import ROOT, free_port


class DatabaseProcess:
    """`python -m secantus` on a fixed port and storage directory: a restart keeps both."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def uri(self) -> str:
        # retryWrites=false as `make up` (deploy/local/stack.sh says why); a short server selection
        # timeout so an outage is noticed in seconds, as a production deployment would configure it.
        return f"mongodb://127.0.0.1:{self.port}/?retryWrites=false&serverSelectionTimeoutMS=3000"

    def start(self, timeout: float = 60.0) -> DatabaseProcess:
        self._log = (self.directory / "secantus.log").open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "secantus",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--storage-path",
                str(self.directory / "data"),
                "--log-level",
                "WARNING",
            ],
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"secantusdb exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"secantusdb not listening on {self.port} after {timeout} s")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, as a crashed database host."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self._close_log()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


@contextlib.asynccontextmanager
async def own_database(
    uri: str, collections: Iterable[CollectionIndexes], prefix: str = "db"
) -> AsyncIterator[MongoStore]:
    """A database of the caller's own on the server at `uri`, with the collections' indexes; dropped after."""
    store = MongoStore(uri, f"{prefix}_{uuid.uuid4().hex[:8]}", app_name="test")
    await store.start(collections)
    try:
        yield store
    finally:
        await store.client.drop_database(store.database.name)
        await store.close()
