"""Every code sample of docs/receiving-webhooks.md, run as written: each receiver as a real server on
127.0.0.1 (aiohttp, FastAPI under uvicorn, Flask and Django under werkzeug, Express under node with
express from npm), fed locally signed deliveries and real ones from the dispatcher."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import queue
import re
import sqlite3
import subprocess
import sys
import threading
import time
import types
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from aforo.shared.serde import dumps_json
from aforo.shared.signing import sign_payload
from tests.integrator.stack import IntegratorStack, eventually
from tests.integrator.vectors import NODE_DIR, vectors
from tests.support.stack import ROOT, free_port

GUIDE = ROOT / "docs" / "receiving-webhooks.md"
NEW_SECRET = "whsec_guide_new_secret_0123456789"
OLD_SECRET = "whsec_guide_old_secret_9876543210"


def samples() -> dict[str, tuple[str, str]]:
    """name → (language, code) for every fenced block of the guide that names itself."""
    found = re.findall(r"```(python|js) (\w+)\n(.*?)```", GUIDE.read_text(encoding="utf-8"), flags=re.S)
    return {name: (language, code) for language, name, code in found}


SAMPLES = samples()


def test_every_code_sample_of_the_guide_is_run_here() -> None:
    fenced = re.findall(r"```(\w+)", GUIDE.read_text(encoding="utf-8"))
    runnable = [language for language in fenced if language in ("python", "js", "javascript", "ts")]

    assert len(runnable) == len(SAMPLES)
    assert set(SAMPLES) == {
        "verify_by_hand",
        "receiver_aiohttp",
        "receiver_fastapi",
        "receiver_flask",
        "receiver_django",
        "receiver_express",
        "handle_once",
    }


def load_sample(name: str, directory: Path) -> types.ModuleType:
    language, code = SAMPLES[name]
    assert language == "python"
    path = directory / f"guide_{name}.py"
    path.write_text(code, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(f"guide_{name}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# -- the samples that are functions ----------------------------------------------------------------


@pytest.mark.parametrize("vector", vectors()["verification"], ids=lambda vector: vector["name"])
def test_verify_by_hand_accepts_exactly_the_genuine_vectors(
    vector: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = load_sample("verify_by_hand", tmp_path)
    monkeypatch.setattr(module.time, "time", lambda: float(vector["now"]))
    secrets = [vector["secrets"]] if isinstance(vector["secrets"], str) else vector["secrets"]

    accepted = any(
        module.verify_by_hand(vector["body"].encode(), vector["header"], secret, vector["toleranceSeconds"])
        for secret in secrets
    )

    assert accepted is (vector["expected"].get("reason") in (None, "body_not_json"))


def test_handle_once_runs_an_event_once_and_again_after_a_failed_attempt(tmp_path: Path) -> None:
    module = load_sample("handle_once", tmp_path)
    db = sqlite3.connect(":memory:")
    handled: list[str] = []

    def failing(_: dict[str, Any]) -> None:
        raise RuntimeError("the work failed")

    with pytest.raises(RuntimeError):
        module.handle_once(db, {"eventId": "e1"}, failing)
    first = module.handle_once(db, {"eventId": "e1"}, lambda envelope: handled.append(envelope["eventId"]))
    again = module.handle_once(db, {"eventId": "e1"}, lambda envelope: handled.append(envelope["eventId"]))

    assert (first, again, handled) == (True, False, ["e1"])


# -- the receivers, as real servers ----------------------------------------------------------------


@dataclass
class RunningReceiver:
    name: str
    url: str
    arrived: Callable[[], list[str]]  # eventIds handed to the receiver's queue (or logged)


def drain(events: queue.Queue[dict[str, Any]], seen: list[str]) -> list[str]:
    with contextlib.suppress(queue.Empty):
        while True:
            seen.append(events.get_nowait()["eventId"])
    return seen


@contextlib.asynccontextmanager
async def run_receiver(name: str, directory: Path) -> AsyncIterator[RunningReceiver]:
    port = free_port()
    url = f"http://127.0.0.1:{port}/hooks/aforo"
    seen: list[str] = []
    if name == "receiver_express":
        async with run_express(directory, port, url) as running:
            yield running
        return
    if name == "receiver_django":
        configure_django(directory)
    module = load_sample(name, directory)
    arrived = lambda: drain(module.events, seen)  # noqa: E731
    if name == "receiver_aiohttp":
        from aiohttp import web

        runner = web.AppRunner(module.app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            yield RunningReceiver(name, url, arrived)
        finally:
            await runner.cleanup()
    elif name == "receiver_fastapi":
        import uvicorn

        server = uvicorn.Server(uvicorn.Config(module.app, host="127.0.0.1", port=port, log_level="warning"))
        task = asyncio.create_task(server.serve())
        await eventually(lambda: _true_if(server.started), 30, "uvicorn started")
        try:
            yield RunningReceiver(name, url, arrived)
        finally:
            server.should_exit = True
            await task
    else:
        from werkzeug.serving import make_server

        if name == "receiver_flask":
            application = module.app
        else:
            from django.core.wsgi import get_wsgi_application
            from django.urls import clear_url_caches, path

            # This run's module: Django caches the URL resolver, which would keep an earlier run's view.
            sys.modules["guide_django_urls"].urlpatterns = [path("hooks/aforo", module.aforo_webhook)]  # type: ignore[attr-defined]
            clear_url_caches()
            application = get_wsgi_application()
        server = make_server("127.0.0.1", port, application, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield RunningReceiver(name, url, arrived)
        finally:
            server.shutdown()
            thread.join(10)


async def _true_if(condition: bool) -> bool | None:
    return True if condition else None


def configure_django(directory: Path) -> None:
    import django
    from django.conf import settings

    if not settings.configured:
        sys.modules["guide_django_urls"] = types.ModuleType("guide_django_urls")
        settings.configure(
            DEBUG=False,
            SECRET_KEY="guide-test-only",
            ALLOWED_HOSTS=["127.0.0.1"],
            ROOT_URLCONF="guide_django_urls",
            MIDDLEWARE=[
                "django.middleware.security.SecurityMiddleware",
                "django.middleware.common.CommonMiddleware",
                "django.middleware.csrf.CsrfViewMiddleware",
            ],
            INSTALLED_APPS=[],
        )
        django.setup()


@contextlib.asynccontextmanager
async def run_express(directory: Path, port: int, url: str) -> AsyncIterator[RunningReceiver]:
    express_modules = NODE_DIR / "node_modules"
    assert (express_modules / "express").is_dir(), (
        "express is missing: `make test` runs npm ci in tests/integrator/node"
    )
    # `require('@aforo/webhooks')` as the guide writes it, resolved to clients/node without an install.
    scoped = directory / "node_modules" / "@aforo"
    scoped.mkdir(parents=True, exist_ok=True)
    (scoped / "webhooks").symlink_to(ROOT / "clients" / "node", target_is_directory=True)
    script = directory / "receiver_express.js"
    script.write_text(SAMPLES["receiver_express"][1], encoding="utf-8")
    log = directory / "express.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            ["node", str(script)],
            env={
                **os.environ,
                "PORT": str(port),
                "NODE_PATH": f"{directory / 'node_modules'}:{express_modules}",
            },
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        async with aiohttp.ClientSession() as http:

            async def listening() -> bool | None:
                if process.poll() is not None:
                    raise AssertionError(f"node exited: {log.read_text()}")
                try:
                    async with http.get(url.replace("/hooks/aforo", "/")):
                        return True
                except aiohttp.ClientError:
                    return None

            await eventually(listening, 30, "the Express sample listening")

        def arrived() -> list[str]:
            return re.findall(r"^received \S+ (\S+)$", log.read_text(), flags=re.M)

        yield RunningReceiver("receiver_express", url, arrived)
    finally:
        process.terminate()
        process.wait(10)


RECEIVERS = ["receiver_aiohttp", "receiver_fastapi", "receiver_flask", "receiver_django", "receiver_express"]


@pytest_asyncio.fixture
async def receiver(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[RunningReceiver]:
    # The guide's rotation advice: the receiver holds the new and the old secret.
    monkeypatch.setenv("AFORO_WEBHOOK_SECRET", f"{NEW_SECRET},{OLD_SECRET}")
    async with run_receiver(request.param, tmp_path) as running:
        yield running


async def post(url: str, body: bytes, header: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            url, data=body, headers={"Content-Type": "application/json", "X-Aforo-Signature": header}
        ) as response,
    ):
        return response.status, await response.text()


def envelope(event_id: str) -> bytes:
    return dumps_json(
        {
            "eventId": event_id,
            "eventType": "INVOICE_GENERATED",
            "category": "Billing",
            "severity": "INFO",
            "tenantId": "t1",
            "customerId": "c1",
            "occurredAt": "2026-11-23T09:00:00.250Z",
            "payload": {"invoiceId": "inv_1", "amountDue": "12.50", "note": "café"},
        }
    )


@pytest.mark.parametrize("receiver", RECEIVERS, indirect=True)
async def test_the_receiver_sample_takes_genuine_deliveries_and_refuses_forged_ones(
    receiver: RunningReceiver,
) -> None:
    now = int(time.time())
    genuine, rotated = envelope("guide-genuine"), envelope("guide-rotated")

    answers = {
        "genuine": await post(receiver.url, genuine, sign_payload(genuine, [NEW_SECRET], now)),
        "old secret during the overlap": await post(
            receiver.url, rotated, sign_payload(rotated, [OLD_SECRET], now)
        ),
        "altered body": await post(receiver.url, genuine + b" ", sign_payload(genuine, [NEW_SECRET], now)),
        "wrong secret": await post(
            receiver.url, genuine, sign_payload(genuine, ["whsec_someone_else_0000"], now)
        ),
        "stale": await post(receiver.url, genuine, sign_payload(genuine, [NEW_SECRET], now - 3600)),
        "no header": await post(receiver.url, genuine, ""),
    }

    statuses = {case: status for case, (status, _) in answers.items()}
    assert statuses == {
        "genuine": 204,
        "old secret during the overlap": 204,
        "altered body": 400,
        "wrong secret": 400,
        "stale": 400,
        "no header": 400,
    }
    assert "no_matching_signature" in answers["altered body"][1]
    assert "timestamp_too_old" in answers["stale"][1]
    assert "header_malformed" in answers["no header"][1]
    assert sorted(await eventually(lambda: _arrived(receiver, 2), 10, "both genuine deliveries")) == [
        "guide-genuine",
        "guide-rotated",
    ]


async def _arrived(receiver: RunningReceiver, count: int) -> list[str] | None:
    seen = receiver.arrived()
    return seen if len(seen) >= count else None


@pytest.mark.parametrize("receiver", RECEIVERS, indirect=True)
async def test_the_receiver_sample_verifies_a_real_delivery_from_the_dispatcher(
    receiver: RunningReceiver, stack: IntegratorStack
) -> None:
    registered = await stack.api.call(
        "POST",
        "/api/v1/webhook-endpoints",
        json={
            "endCustomerId": f"guide-{receiver.name}",
            "url": receiver.url,
            "events": ["*"],
            "secret": NEW_SECRET,
        },
    )
    assert registered.status == 201, registered.body
    endpoint_id = registered.json()["endpointId"]

    async def probed() -> str | None:
        event_id = await stack.probe(endpoint_id)
        with contextlib.suppress(AssertionError):
            await eventually(
                lambda: _true_if(event_id in receiver.arrived()), 3, "the probe at the sample receiver"
            )
            return event_id
        return None

    event_id = await eventually(probed, 60, "a probe verified by the sample receiver")
    [row] = await stack.wait_rows(
        f"guide-{receiver.name}", lambda r: r["eventId"] == event_id and r["status"] == "DELIVERED"
    )
    assert row["responseStatus"] == 204
