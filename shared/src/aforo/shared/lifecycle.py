"""The common service lifecycle: start, ready, drain, stop, driven by one runner.

`run_service` serves `/healthz`, `/readyz`, `/metrics` (and the service's own routes, for the API
and the SSE gateway) on the service's HTTP port, starts the service, and on SIGTERM or SIGINT:
marks it not ready, lets it stop taking work and finish or hand back in-flight work (`drain`,
bounded by `shutdown_grace_seconds`), closes its clients (`stop`) and returns exit code 0, or 1 when
the drain or the stop ran out of time (work was left for the next owner to redo: the orchestrator
and whoever reads its events should know).
"""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import NoReturn, TypeVar

from aiohttp import web
from aiohttp.typedefs import Middleware
from pydantic import ValidationError

from aforo.shared.http import JsonErrorAppRunner, health_routes, security_headers_on_prepare
from aforo.shared.logging import configure_logging, get_logger
from aforo.shared.metrics import SERVICE_UP
from aforo.shared.settings import ConfigurationError, ServiceSettings

log = get_logger(__name__)

HTTP_SHUTDOWN_TIMEOUT_SECONDS = 5.0
"""The most `cleanup` waits for handlers that outlived drain before it cancels them."""


class Service(ABC):
    """What a process does between start and stop; the runner owns signals and the HTTP server."""

    name: str = "service"

    @abstractmethod
    async def start(self) -> None:
        """Connect clients, create what must exist, begin taking work."""

    @abstractmethod
    async def readiness_checks(self) -> dict[str, bool]:
        """Each dependency's answer, e.g. `{"kafka": True, "mongodb": True}`."""

    @abstractmethod
    async def drain(self) -> None:
        """Stop taking work; finish or hand back what is in flight; commit offsets."""

    @abstractmethod
    async def stop(self) -> None:
        """Close clients. Called after `drain`, also when `drain` ran out of time."""

    def is_alive(self) -> bool:
        """Liveness: the service's own workers have not died. Cheap; no I/O."""
        return True

    def add_routes(self, app: web.Application) -> None:  # noqa: B027 - optional hook, most services add none
        """Services with an HTTP surface (API, SSE gateway) add their routes here."""

    def middlewares(self) -> Sequence[Middleware]:
        """Middlewares around every route, outermost first (e.g. the API's errors and auth)."""
        return ()

    def max_request_body_bytes(self) -> int:
        """aiohttp's `client_max_size`: the largest request body the HTTP server reads."""
        return 1024 * 1024

    def listen_backlog(self) -> int:
        """Connections the kernel may queue before `accept()` (capped by net.core.somaxconn).

        aiohttp's 128 suits short requests; a server that thousands of clients reconnect to at once
        (the SSE gateway after a replica drained) raises it, or the overflow waits out SYN retries.
        """
        return 128

    def cancels_handlers_on_disconnect(self) -> bool:
        """aiohttp's `handler_cancellation`: whether a handler is cancelled when its client goes away.

        Off by default (a short request handler that writes to MongoDB should finish); the SSE
        gateway turns it on, since its handlers wait on streams for hours and a closed browser tab
        must free its slot at once, not at the next failed heartbeat write.
        """
        return False


class ServiceRunner:
    """Runs one `Service` with its HTTP server under the lifecycle above."""

    def __init__(self, service: Service, settings: ServiceSettings, *, owns_process: bool = False) -> None:
        self.service = service
        self.settings = settings
        self.owns_process = owns_process
        """The service is the process (its entrypoint): process-wide tuning is this runner's to do."""
        self.started = False
        self.stopping = False
        self._stop_requested = asyncio.Event()
        self._http_runner: web.AppRunner | None = None
        self.bound_port: int | None = None

    async def _readiness(self) -> dict[str, bool]:
        if not self.started or self.stopping:
            return {"started": self.started and not self.stopping}
        try:
            checks = await asyncio.wait_for(
                self.service.readiness_checks(), self.settings.readiness_timeout_seconds + 1
            )
        except TimeoutError:
            checks = {"timeout": False}
        SERVICE_UP.labels(self.service.name).set(1 if checks and all(checks.values()) else 0)
        return checks

    def build_http_app(self) -> web.Application:
        app = web.Application(
            client_max_size=self.service.max_request_body_bytes(), middlewares=self.service.middlewares()
        )
        app.on_response_prepare.append(security_headers_on_prepare)
        app.add_routes(health_routes(self.service.is_alive, self._readiness))
        self.service.add_routes(app)
        return app

    async def start_http(self) -> None:
        # aiohttp's shutdown_timeout (60 s by default) is how long `cleanup` waits for handlers still
        # running after drain; bounded by the grace period, so SIGTERM never outlives it by that much.
        self._http_runner = JsonErrorAppRunner(
            self.build_http_app(),
            access_log=None,
            handle_signals=False,
            handler_cancellation=self.service.cancels_handlers_on_disconnect(),
            shutdown_timeout=min(HTTP_SHUTDOWN_TIMEOUT_SECONDS, self.settings.shutdown_grace_seconds),
        )
        await self._http_runner.setup()
        site = web.TCPSite(
            self._http_runner,
            self.settings.http_host,
            self.settings.http_port,
            backlog=self.service.listen_backlog(),
        )
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.bound_port = sockets[0].getsockname()[1] if sockets else self.settings.http_port

    def request_stop(self) -> None:
        self._stop_requested.set()

    async def run(self) -> int:
        """Serve until SIGTERM/SIGINT; return the process exit code."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        await self.start_http()
        log.info("http_listening", host=self.settings.http_host, port=self.bound_port)
        try:
            await self.service.start()
        except Exception:
            log.exception("service_start_failed")
            await self._close_http()
            return 1
        self.started = True
        if self.owns_process:
            tune_garbage_collector(self.settings.gc_gen0_threshold)
        log.info("service_started", service=self.service.name)
        try:
            await self._stop_requested.wait()
            return await self.shutdown()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    async def shutdown(self) -> int:
        self.stopping = True
        SERVICE_UP.labels(self.service.name).set(0)
        grace = self.settings.shutdown_grace_seconds
        began = time.monotonic()
        log.info("service_draining", grace_seconds=grace)
        clean = True
        try:
            await asyncio.wait_for(self.service.drain(), grace)
        except TimeoutError:
            clean = False
            log.warning("drain_timed_out", grace_seconds=grace)
        remaining = max(1.0, grace - (time.monotonic() - began))
        try:
            await asyncio.wait_for(self.service.stop(), remaining)
        except TimeoutError:
            clean = False
            log.warning("stop_timed_out")
        await self._close_http()
        log.info("service_stopped", seconds=round(time.monotonic() - began, 3), clean=clean)
        return 0 if clean else 1

    async def _close_http(self) -> None:
        if self._http_runner is not None:
            await self._http_runner.cleanup()
            self._http_runner = None


def tune_garbage_collector(gen0_threshold: int) -> None:
    """Once a service has started: what it built to start (modules, clients, caches) is frozen out of
    every later collection, and the youngest generation is collected every `gen0_threshold`
    allocations instead of every 700.

    Why: a service handling thousands of events a second allocates a few hundred objects per event,
    so with Python's defaults it runs a collection every couple of events and a full one (walking
    every live object) every few hundred; the dispatcher spent about a sixth of its CPU per delivery
    there (bench/README.md). Few of those objects form cycles, so collecting less often costs
    little memory. 0 leaves Python's defaults alone.
    """
    if gen0_threshold <= 0:
        return
    gc.freeze()
    _, gen1_threshold, gen2_threshold = gc.get_threshold()
    gc.set_threshold(gen0_threshold, gen1_threshold, gen2_threshold)


def run_service(service: Service, settings: ServiceSettings) -> int:
    """Entrypoint helper: run the service on a fresh event loop and return its exit code."""
    return asyncio.run(ServiceRunner(service, settings, owns_process=True).run())


EXIT_MISCONFIGURED = 2
"""The exit code of a process whose settings cannot work (an orchestrator shows it; no restart helps)."""

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


def settings_or_exit(settings_type: type[SettingsT], service_name: str) -> SettingsT:
    """A process's settings from its environment, logging configured by them; settings that cannot
    work exit 2 with one log line naming what is wrong (never a value, never a traceback)."""
    try:
        settings = settings_type()
    except ValidationError as error:
        configure_logging(service_name, "INFO", json=True)
        problems = [
            f"{'.'.join(str(part) for part in problem['loc']) or 'settings'}: {problem['msg']}"
            for problem in error.errors(include_input=False, include_url=False)
        ]
        get_logger(__name__).error("settings_invalid", service=service_name, problems=problems)
        sys.exit(EXIT_MISCONFIGURED)
    configure_logging(service_name, settings.log_level, json=settings.log_json)
    return settings


def run_main(
    service_type: Callable[[SettingsT], Service],
    settings_type: type[SettingsT],
    *,
    service_name: str,
    before_run: Callable[[], None] | None = None,
) -> NoReturn:
    """Every `__main__`: settings → logging → service → run, and one way to fail on bad settings:
    exit 2 with one log line naming what is wrong (never a value, never a traceback)."""
    settings = settings_or_exit(settings_type, service_name)
    try:
        service = service_type(settings)
    except ConfigurationError as error:
        get_logger(__name__).error("settings_invalid", service=service_name, problems=[str(error)])
        sys.exit(EXIT_MISCONFIGURED)
    if before_run is not None:
        before_run()
    sys.exit(run_service(service, settings))
