"""The integrator harness in real headless Chromium against the real stack (every process real), driven
through its five sections as a newcomer would; the page after the flow is saved as docs/img/harness.png
for the receiving guide."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest_asyncio

from tests.browser.cdp import Chromium, Page
from tests.integrator.stack import SOURCE_TOPIC, IntegratorStack, integrator_stack
from tests.support.stack import ROOT, LocalStack

SCREENSHOT = ROOT / "docs" / "img" / "harness.png"
CUSTOMER = "browser-c1"
PROBE_ARRIVAL_SECONDS = 2.0  # the guide's promise: a probe is in the inbox within 2 s


@dataclass
class Harness:
    stack: IntegratorStack
    page: Page

    async def click(self, selector: str) -> None:
        await self.page.evaluate(f"document.querySelector({json.dumps(selector)}).click()")

    async def fill(self, selector: str, value: str) -> None:
        await self.page.evaluate(
            f"(() => {{ const node = document.querySelector({json.dumps(selector)});"
            f" node.value = {json.dumps(value)}; node.dispatchEvent(new Event('change')); }})()"
        )

    async def text(self, selector: str) -> str:
        value = await self.page.evaluate(f"document.querySelector({json.dumps(selector)}).textContent")
        return str(value)

    async def rows(self, selector: str) -> int:
        count = await self.page.evaluate(f"document.querySelectorAll({json.dumps(selector)}).length")
        return int(count)

    async def inbox_row(self, condition: str, timeout: float = 30.0) -> dict[str, str]:
        """The newest inbox row whose dataset satisfies `condition` (JS over `d`), waited for."""
        found = await self.page.wait_for(
            "(() => { const row = [...document.querySelectorAll('#inbox-table tbody tr[data-seq]')]"
            f".find((r) => {{ const d = r.dataset; return {condition}; }});"
            " return row ? {...row.dataset, text: row.textContent} : null; })()",
            timeout=timeout,
        )
        return dict(found)


@pytest_asyncio.fixture(scope="module")
async def harness(local_stack: LocalStack, service_log_dir: Path) -> AsyncIterator[Harness]:
    async with integrator_stack(local_stack, service_log_dir) as stack:
        browser = await Chromium.launch()
        try:
            page = await browser.open(stack.harness_url)
            await page.send(
                "Emulation.setDeviceMetricsOverride",
                width=1280,
                height=900,
                deviceScaleFactor=1,
                mobile=False,
            )
            await page.wait_for(
                "document.querySelector('#api-url').textContent.startsWith('http')", timeout=30
            )
            yield Harness(stack, page)
        finally:
            await browser.close()


async def test_a_newcomer_goes_through_the_five_sections(harness: Harness) -> None:
    page = harness.page

    # 1 · Catalog: a development token, the catalog, a CUSTOM type (a bad rule first: its path is shown).
    await harness.click("#use-dev-token")
    await page.wait_for("document.querySelectorAll('#catalog-table tbody tr').length >= 15", timeout=20)
    assert "mandatory" in await harness.text('#catalog-table tr[data-event-type="PAYMENT_OVERDUE"]')
    await page.evaluate("document.querySelector('#add-event-type').open = true")
    await harness.fill("#def-type", "BROWSER_WHALE")
    await harness.fill(
        "#def-rule",
        json.dumps(
            {
                "sourceEvents": ["INVOICE_GENERATED"],
                "match": {
                    "all": [
                        {"field": "amountDue", "op": "gte", "value": 1},
                        {"field": "x", "op": "bogus", "value": 1},
                    ]
                },
            }
        ),
    )
    await harness.click("#definition-form button[type=submit]")
    await page.wait_for(
        "document.querySelector('#definition-result').textContent.includes('rule path match.all[1].op')"
    )
    await harness.fill("#def-rule", "")
    await harness.click("#definition-form button[type=submit]")
    await page.wait_for(
        "document.querySelector('#definition-result').textContent.includes('created BROWSER_WHALE')"
    )

    # 2 · Webhook: a secret for the harness's receiver, an endpoint at it.
    await harness.fill("#customer", CUSTOMER)
    await harness.click("#generate-secret")
    await page.wait_for("document.querySelector('#secrets').textContent.includes('secret #1')")
    await harness.click("#register")
    endpoint_id = await page.wait_for("document.querySelector('#endpoints li')?.dataset.endpoint", timeout=20)
    await harness.stack.wait_live(str(endpoint_id))  # the dispatcher picks a new endpoint up within its bound

    # 3 + 4 · Fire a probe: ✅ in the live inbox within 2 s.
    await harness.click("#send-probe")
    event_id = await page.wait_for(
        "(document.querySelector('#fire-result').textContent.match(/eventId (\\S+)/) || [])[1]"
    )
    probe = await harness.inbox_row(
        f"d.eventId === {json.dumps(event_id)} && d.verified === 'true'", timeout=PROBE_ARRIVAL_SECONDS
    )
    assert "✅ verified with secret #1" in probe["text"]

    # A delivery checked with a wrong secret: ❌ with the reason (answered 400, so it is retried).
    await harness.fill("#mode", "wrong-secret")
    await page.wait_for(
        "fetch('/harness/state').then((r) => r.json()).then((s) => s.mode === 'wrong-secret')"
    )
    await harness.click("#send-probe")
    forged = await harness.inbox_row("d.verified === 'false' && d.reason === 'wrong_secret'")
    assert "❌ wrong secret" in forged["text"]
    await harness.fill("#mode", "normal")
    await page.wait_for("fetch('/harness/state').then((r) => r.json()).then((s) => s.mode === 'normal')")
    await harness.inbox_row(f"d.eventId === {json.dumps(forged['eventId'])} && d.verified === 'true'")

    # A scripted 500: the retry arrives marked as a retry of the first attempt.
    await harness.fill("#script-answer", "500")
    await harness.fill("#script-count", "1")
    await harness.click("#apply-script")
    await page.wait_for(
        "document.querySelector('#script-status').textContent.includes('answering 500 to the next 1')"
    )
    await harness.click("#send-probe")
    failed = await harness.inbox_row("d.reason === '' && r.textContent.includes('500 (scripted)')")
    retry = await harness.inbox_row(
        f"d.eventId === {json.dumps(failed['eventId'])} && d.verified === 'true' && r.textContent.includes('retry of')"
    )
    assert f"retry of #{failed['seq']}" in retry["text"]

    # 3 · Fire a CUSTOM event and a SYSTEM event through the bridge.
    await harness.fill("#emit-type", "BROWSER_WHALE")
    await harness.click("#emit")
    await harness.inbox_row("d.eventType === 'BROWSER_WHALE' && d.verified === 'true'")
    await harness.fill("#system-topic", f"{harness.stack.api.prefix}{SOURCE_TOPIC}")
    await harness.click("#produce")
    await page.wait_for("document.querySelector('#fire-result').textContent.includes('produced to')")
    await harness.inbox_row("d.eventType === 'INVOICE_GENERATED' && d.verified === 'true'", timeout=60)

    # 5 · Audit: the attempts, the retried ones included. A row is written after its receipt (within
    # the audit trail's 1 s), so the page is loaded again, as an operator would, until all are there.
    deadline = time.monotonic() + 20
    while True:
        await harness.click("#load-audit")
        try:
            await page.wait_for(
                "document.querySelectorAll('#audit-table tbody tr[data-status=\"DELIVERED\"]').length >= 5",
                timeout=2,
            )
            break
        except AssertionError:
            if time.monotonic() > deadline:
                raise
    assert await harness.rows('#audit-table tbody tr[data-status="RETRYING"]') >= 2
    assert "the receiver answered 204" not in await harness.text("#audit-table")
    assert "delivered, the receiver answered 200" in await harness.text("#audit-table")

    # The page after the flow, for the guide.
    height = await page.evaluate("document.documentElement.scrollHeight")
    await page.send(
        "Emulation.setDeviceMetricsOverride",
        width=1280,
        height=int(height),
        deviceScaleFactor=1,
        mobile=False,
    )
    shot = await page.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    SCREENSHOT.write_bytes(base64.b64decode(shot["data"]))
    assert SCREENSHOT.stat().st_size > 10_000
