"""The embed SDK in real headless Chromium, against a real gateway process on the real stack.

Pages are served on 127.0.0.1 by a test integrator site on several ports (several origins): the
widget page mounts widgets with the SDK loaded from the gateway; the host page embeds it in an
iframe. Counts of bridge exchanges, refreshes and streams are read from the gateway (its /metrics),
from its `embed_sessions` collection and from the integrator's token endpoint, not from the page.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest_asyncio

from aforo.shared.collections import EMBED_SESSIONS
from tests.browser.cdp import Chromium, Page
from tests.browser.site import IntegratorSite
from tests.support.kafka import produce, unique_prefix
from tests.support.metrics import metric
from tests.support.processes import ServiceProcess
from tests.support.sse_harness import GatewayUnderTest, gateway_under_test, widget_envelope
from tests.support.stack import LocalStack

STREAMING = "AforoEmbed.state().then((tenants) => Boolean(tenants.t1 && tenants.t1.streaming))"
BOTH_STREAMING = (
    "AforoEmbed.state().then((tenants) => Boolean(tenants.t1 && tenants.t1.streaming"
    " && tenants.t2 && tenants.t2.streaming))"
)
# The shortest session-token lifetime the gateway accepts; no clock leeway, so expiry is exact.
SHORT_SESSION_TTL_SECONDS = 10


@dataclass
class Embed:
    harness: GatewayUnderTest
    gateway: ServiceProcess
    site: IntegratorSite
    browser: Chromium
    http: aiohttp.ClientSession
    host_origin: str
    widget_origin: str
    foreign_origin: str

    async def metric(self, name: str, **labels: str) -> float:
        return await metric(self.http, self.gateway.url, name, **labels)

    async def exchanges(self) -> float:
        return await self.metric("aforo_sse_session_exchanges_total", outcome="issued")

    async def refreshes(self, outcome: str = "issued") -> float:
        return await self.metric("aforo_sse_session_refreshes_total", outcome=outcome)

    async def session_of(self, customer: str) -> dict[str, Any]:
        sessions = self.harness.mongo.collection(EMBED_SESSIONS.collection)
        assert await sessions.count_documents({"customerId": customer}) == 1
        session = await sessions.find_one({"customerId": customer})
        assert session is not None
        return dict(session)

    async def wait_revoked(self, customer: str, timeout: float = 5.0) -> dict[str, Any]:
        """The customer's only session once `revokedAt` is set (the SDK's destroy is asynchronous)."""
        deadline = time.monotonic() + timeout
        session = await self.session_of(customer)
        while session["revokedAt"] is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"the session of {customer} was never revoked")
            await asyncio.sleep(0.1)
            session = await self.session_of(customer)
        return session

    async def wait_open_connections(self, count: int, timeout: float = 10.0) -> float:
        began = time.monotonic()
        while await self.metric("aforo_sse_open_connections") != count:
            if time.monotonic() - began > timeout:
                raise AssertionError(f"open connections never became {count}")
            await asyncio.sleep(0.05)
        return time.monotonic() - began

    async def publish(self, event_id: str, customer: str, tenant: str = "t1") -> None:
        envelope = widget_envelope(
            event_id, tenant, customer, invoiceId=event_id, amountDue=4200, email="a@b.co"
        )
        await produce(
            self.harness.stack.kafka_bootstrap,
            self.harness.widget_topic,
            [envelope],
            key=f"{tenant}:{customer}".encode(),
        )

    def widget_url(self, customer: str, origin: str | None = None, **query: str | int) -> str:
        extra = "".join(f"&{name}={value}" for name, value in query.items())
        return f"{origin or self.widget_origin}/widget.html?customer={customer}{extra}"


@pytest_asyncio.fixture(scope="module")
async def embed(local_stack: LocalStack, service_log_dir: Path) -> AsyncIterator[Embed]:
    async with gateway_under_test(local_stack, service_log_dir, unique_prefix()) as harness:
        gateway = await harness.start_gateway()
        site = IntegratorSite(gateway.url)
        host_origin, widget_origin, foreign_origin = (
            await site.serve(),
            await site.serve(),
            await site.serve(),
        )
        site.add_tenant(await harness.seed("t1", origins=(host_origin, widget_origin)))
        # A second tenant whose embed key allows the widget pages but not the host page.
        site.add_tenant(await harness.seed("t2", origins=(widget_origin,)))
        browser = await Chromium.launch()
        try:
            async with aiohttp.ClientSession() as http:
                yield Embed(harness, gateway, site, browser, http, host_origin, widget_origin, foreign_origin)
        finally:
            await browser.close()
            await site.close()


async def test_two_widgets_on_one_page_share_one_bridge_exchange_and_one_stream(embed: Embed) -> None:
    exchanges, opened = await embed.exchanges(), await embed.metric("aforo_sse_connections_opened_total")

    page = await embed.browser.open(embed.widget_url("c-two", widgets=2))
    try:
        assert await page.wait_for("window.ready") is True
        await page.wait_for(STREAMING)
        assert await page.evaluate("received.length") == 2
        assert await embed.exchanges() - exchanges == 1
        assert await embed.metric("aforo_sse_connections_opened_total") - opened == 1
        assert embed.site.bridge_tokens["c-two"] == 1

        await embed.publish("two-1", "c-two")

        await page.wait_for("received[0].length === 1 && received[1].length === 1")
        first, second = await page.evaluate("received")
        assert first == second
        assert first[0]["type"] == "aforo.invoice.created"
        assert first[0]["payload"] == {"invoiceId": "two-1", "amountDue": 4200}
        assert first[0]["version"] == "1"
    finally:
        await page.close()


async def frame_page(
    embed: Embed, host_origin: str, customer: str, streaming: str = STREAMING, **query: str | int
) -> Page:
    page = await embed.browser.open(
        f"{host_origin}/host.html?widget={quote(embed.widget_url(customer, **query), safe='')}"
    )
    await page.wait_for_frame(embed.widget_origin)
    assert await page.wait_for("window.ready", origin=embed.widget_origin) is True
    await page.wait_for(streaming, origin=embed.widget_origin)
    return page


async def test_host_messages_pass_the_allowlist_the_origin_check_and_the_100_ms_dedup(embed: Embed) -> None:
    widget = embed.widget_origin
    host = await frame_page(embed, embed.host_origin, "c-frames")
    foreign = await frame_page(embed, embed.foreign_origin, "c-foreign-host")
    try:
        checkout = "{type: 'aforo:checkout-completed', payload: {checkoutId: 'co-1'}}"
        await host.evaluate(
            f"postToWidget({checkout}); postToWidget({checkout});"  # the same message twice at once
            "postToWidget({type: 'aforo:not-on-the-list', payload: {}});"
            "postToWidget({type: 'aforo.invoice.created', payload: {}});"
            "postToWidget('aforo:invoice-paid');"
            "postToWidget({type: 'aforo:invoice-paid', payload: {invoiceId: 'inv-9'}}); true"
        )
        await foreign.evaluate(f"postToWidget({checkout}); true")  # the foreign host is not an allowed domain
        await host.wait_for("inbound.length >= 2", origin=widget)
        await asyncio.sleep(0.3)  # anything else posted above has long arrived by now
        inbound = await host.evaluate("inbound", origin=widget)
        assert [(message["type"], message["payload"]) for message in inbound] == [
            ("aforo:checkout-completed", {"checkoutId": "co-1"}),
            ("aforo:invoice-paid", {"invoiceId": "inv-9"}),
        ]
        assert {message["origin"] for message in inbound} == {embed.host_origin}
        assert await foreign.evaluate("inbound.length", origin=widget) == 0

        # More than 100 ms later the same message is news again.
        await host.evaluate(
            f"new Promise((done) => setTimeout(() => {{ postToWidget({checkout}); done(true); }}, 150))"
        )
        await host.wait_for("inbound.length === 3", origin=widget)

        # Outbound: the widget's events reach its allowed host, the raw listener and AforoEmbed.on alike.
        await embed.publish("frames-1", "c-frames")
        await embed.publish("foreign-1", "c-foreign-host")
        await host.wait_for("raw.length === 1 && viaSdk.length === 1")
        raw, via_sdk = await host.evaluate("[raw[0], viaSdk[0]]")
        assert raw == via_sdk
        assert set(raw) == {"type", "payload", "version", "emittedAt", "source"}
        assert (raw["type"], raw["payload"]) == (
            "aforo.invoice.created",
            {"invoiceId": "frames-1", "amountDue": 4200},
        )
        await foreign.wait_for("received[0].length === 1", origin=widget)  # the widget itself got it ...
        assert await foreign.evaluate("raw.length + viaSdk.length") == 0  # ... but never posts to that host
    finally:
        await host.close()
        await foreign.close()


async def test_a_page_on_an_origin_the_embed_key_does_not_allow_gets_no_session(embed: Embed) -> None:
    exchanges = await embed.exchanges()

    page = await embed.browser.open(embed.widget_url("c-not-allowed", origin=embed.foreign_origin))
    try:
        assert await page.wait_for("window.ready.then(() => mountError)")
        assert await page.evaluate("AforoEmbed.state()") == {}
        assert await embed.exchanges() == exchanges
        sessions = embed.harness.mongo.collection(EMBED_SESSIONS.collection)
        assert await sessions.count_documents({"customerId": "c-not-allowed"}) == 0
    finally:
        await page.close()


async def test_the_last_unmount_lingers_then_closes_the_stream_and_revokes_the_session(embed: Embed) -> None:
    await embed.wait_open_connections(0)
    exchanges, opened = await embed.exchanges(), await embed.metric("aforo_sse_connections_opened_total")
    page = await embed.browser.open(embed.widget_url("c-linger", linger=1500))
    try:
        assert await page.wait_for("window.ready") is True
        await page.wait_for(STREAMING)
        await embed.wait_open_connections(1)

        await page.evaluate("widgets[0].unmount(), true")
        assert await page.evaluate("AforoEmbed.state().then((tenants) => tenants.t1.lingering)") is True
        await asyncio.sleep(0.5)
        assert await embed.metric("aforo_sse_open_connections") == 1  # still lingering

        # A widget mounted during the linger takes the same stream: no new exchange, no new stream.
        assert await page.evaluate("mountWidget()") == 1
        assert await page.evaluate("AforoEmbed.state().then((tenants) => tenants.t1)") == {
            "widgets": 1,
            "streaming": True,
            "lastEventId": None,
            "lingering": False,
        }
        assert await embed.exchanges() - exchanges == 1
        assert await embed.metric("aforo_sse_connections_opened_total") - opened == 1

        await page.evaluate("widgets[1].unmount(), true")
        unmounted = time.monotonic()
        await embed.wait_open_connections(0)
        assert time.monotonic() - unmounted >= 1.5
        assert await page.evaluate("AforoEmbed.state()") == {}
        # destroy() revokes the session at the gateway right after the stream closes: wait for it.
        sessions = embed.harness.mongo.collection(EMBED_SESSIONS.collection)
        deadline = time.monotonic() + 5
        session = await sessions.find_one({"customerId": "c-linger"})
        while session is not None and session["revokedAt"] is None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            session = await sessions.find_one({"customerId": "c-linger"})
        assert session is not None
        assert session["revokedAt"] is not None
    finally:
        await page.close()


async def test_the_stream_recovers_after_a_gateway_restart(
    embed: Embed, local_stack: LocalStack, service_log_dir: Path
) -> None:
    async with gateway_under_test(local_stack, service_log_dir, unique_prefix()) as harness:
        gateway = await harness.start_gateway()
        site = IntegratorSite(gateway.url)
        widget_origin = await site.serve()
        site.add_tenant(await harness.seed("t1", origins=(widget_origin,)))
        restarted_embed = Embed(
            harness,
            gateway,
            site,
            embed.browser,
            embed.http,
            widget_origin,
            widget_origin,
            embed.foreign_origin,
        )
        page = await embed.browser.open(restarted_embed.widget_url("c-restart"))
        try:
            assert await page.wait_for("window.ready") is True
            await page.wait_for(STREAMING)
            await restarted_embed.publish("r1", "c-restart")
            await page.wait_for("received[0].length === 1")

            assert await asyncio.to_thread(gateway.terminate, 30) == 0
            await page.wait_for(f"{STREAMING}.then((streaming) => !streaming)")
            await restarted_embed.publish("r2", "c-restart")  # while no gateway is up

            restarted = await harness.start_gateway(port=gateway.port)
            restarted_embed.gateway = restarted
            await page.wait_for(STREAMING, timeout=20)
            await restarted_embed.publish("r3", "c-restart")
            await page.wait_for("received[0].length >= 3")
            await asyncio.sleep(0.3)
            ids = await page.evaluate("received[0].map((message) => message.payload.invoiceId)")
            assert ids == ["r1", "r2", "r3"]  # r2 replayed from the new replica's history, once
            assert await restarted_embed.exchanges() == 0  # the session outlived the replica
            assert site.bridge_tokens["c-restart"] == 1
        finally:
            await page.close()
            await site.close()


async def test_widgets_of_two_tenants_on_one_page_get_only_their_own_tenants_messages(embed: Embed) -> None:
    widget = embed.widget_origin
    page = await frame_page(embed, embed.host_origin, "c-tenants", streaming=BOTH_STREAMING, tenants="t1,t2")
    try:
        assert await page.evaluate("widgetTenants", origin=widget) == ["t1", "t2"]

        await embed.publish("tenant-a-1", "c-tenants", tenant="t1")
        await embed.publish("tenant-b-1", "c-tenants", tenant="t2")
        # Page-wide handlers run after the widgets' handlers of the same event: once they have seen
        # both events, every widget handler that was going to get either has got it.
        await page.wait_for("pageEvents.length === 2", origin=widget)
        assert sorted(await page.evaluate("pageEvents", origin=widget)) == [
            ["t1", "tenant-a-1"],
            ["t2", "tenant-b-1"],
        ]
        received = await page.evaluate(
            "received.map((messages) => messages.map((message) => message.payload.invoiceId))", origin=widget
        )
        assert received == [["tenant-a-1"], ["tenant-b-1"]]

        # The host page's origin is an allowed domain of t1's embed key, not of t2's: its message
        # reaches t1's widget (and the page-wide handler, once), never t2's.
        await page.evaluate(
            "postToWidget({type: 'aforo:refresh-requested', payload: {scope: 'invoices'}}); true"
        )
        await page.wait_for("rawInbound.length === 1", origin=widget)  # runs after the SDK's listener
        assert await page.evaluate("inboundTenants", origin=widget) == [["t1"]]
        widget_inbound = await page.evaluate("widgetInbound", origin=widget)
        assert [[message["payload"] for message in messages] for messages in widget_inbound] == [
            [{"scope": "invoices"}],
            [],
        ]
    finally:
        await page.close()


async def test_the_unsubscribe_returned_by_on_stops_delivery(embed: Embed) -> None:
    page = await embed.browser.open(embed.widget_url("c-unsubscribe"))
    try:
        assert await page.wait_for("window.ready") is True
        await page.wait_for(STREAMING)
        await page.evaluate(
            "window.viaWidget = []; window.viaPage = [];"
            "window.offWidget = widgets[0].on('aforo.invoice.created', (m) => viaWidget.push(m.payload.invoiceId));"
            "window.offPage = AforoEmbed.on('aforo.invoice.created', (m) => viaPage.push(m.payload.invoiceId));"
            "typeof offWidget === 'function' && typeof offPage === 'function'"
        )
        await embed.publish("unsubscribe-1", "c-unsubscribe")
        await page.wait_for("viaWidget.length === 1 && viaPage.length === 1")

        await page.evaluate("offWidget(); offPage(); offWidget(); true")  # a second call is harmless
        await embed.publish("unsubscribe-2", "c-unsubscribe")
        # The handlers that stay subscribed (the widget's first, the page-wide last) got it ...
        await page.wait_for("received[0].length === 2 && pageEvents.length === 2")
        # ... and, in the same dispatch, the unsubscribed ones did not.
        assert await page.evaluate("[viaWidget, viaPage]") == [["unsubscribe-1"], ["unsubscribe-1"]]
    finally:
        await page.close()


async def test_host_messages_from_a_window_other_than_the_parent_are_ignored(embed: Embed) -> None:
    widget = embed.widget_origin
    page = await frame_page(embed, embed.host_origin, "c-sibling")
    try:
        await page.wait_for("siblingReady()")
        # The sibling frame has the host page's origin, an allowed domain, but it is not the parent.
        await page.evaluate(
            "postFromSibling({type: 'aforo:checkout-completed', payload: {checkoutId: 'from-sibling'}});"
            "postToWidget({type: 'aforo:checkout-completed', payload: {checkoutId: 'from-parent'}}); true"
        )
        await page.wait_for("rawInbound.length === 2", origin=widget)  # both arrived, the SDK saw both
        raw = await page.evaluate("rawInbound", origin=widget)
        assert sorted((message["payload"]["checkoutId"], message["fromParent"]) for message in raw) == [
            ("from-parent", True),
            ("from-sibling", False),
        ]
        accepted = await page.evaluate("[inbound, widgetInbound[0]]", origin=widget)
        assert [[message["payload"] for message in messages] for messages in accepted] == [
            [{"checkoutId": "from-parent"}],
            [{"checkoutId": "from-parent"}],
        ]
    finally:
        await page.close()


@pytest_asyncio.fixture(scope="module")
async def short_sessions(
    embed: Embed, local_stack: LocalStack, service_log_dir: Path
) -> AsyncIterator[Embed]:
    """A gateway whose session tokens live 10 s with no leeway, for the SDK's timed refresh."""
    async with gateway_under_test(
        local_stack,
        service_log_dir,
        unique_prefix(),
        AFORO_SSE_GATEWAY_SESSION_TTL_SECONDS=str(SHORT_SESSION_TTL_SECONDS),
        AFORO_SSE_GATEWAY_TOKEN_LEEWAY_SECONDS="0",
    ) as harness:
        gateway = await harness.start_gateway()
        site = IntegratorSite(gateway.url)
        widget_origin = await site.serve()
        site.add_tenant(await harness.seed("t1", origins=(widget_origin,)))
        try:
            yield Embed(
                harness,
                gateway,
                site,
                embed.browser,
                embed.http,
                widget_origin,
                widget_origin,
                embed.foreign_origin,
            )
        finally:
            await site.close()


def as_utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def test_a_mounted_widget_refreshes_its_session_on_a_timer_and_never_exchanges_again(
    short_sessions: Embed,
) -> None:
    embed = short_sessions
    exchanges, refreshes = await embed.exchanges(), await embed.refreshes()
    opened = await embed.metric("aforo_sse_connections_opened_total")
    page = await embed.browser.open(embed.widget_url("c-long"))
    try:
        assert await page.wait_for("window.ready") is True
        await page.wait_for(STREAMING)
        mounted = time.monotonic()

        # Refreshes at ~80% of each token's lifetime: two of them within two lifetimes.
        deadline = mounted + 2 * SHORT_SESSION_TTL_SECONDS + 2
        while await embed.refreshes() - refreshes < 2:
            assert time.monotonic() < deadline, "the SDK did not refresh its session twice in two lifetimes"
            await asyncio.sleep(0.2)
        # Stay mounted past two whole lifetimes: the exchanged token and the first refreshed one expired.
        await asyncio.sleep(max(0.0, mounted + 2 * SHORT_SESSION_TTL_SECONDS + 0.5 - time.monotonic()))

        assert 2 <= await embed.refreshes() - refreshes <= 3
        assert await embed.refreshes("token_expired") == 0
        assert await embed.exchanges() - exchanges == 1
        assert embed.site.bridge_tokens["c-long"] == 1
        session = await embed.session_of("c-long")  # one session, extended by the refreshes
        assert as_utc(session["expiresAt"]) > datetime.now(UTC)
        assert session["revokedAt"] is None

        # The stream opened once and is still the one delivering.
        assert await page.evaluate(STREAMING) is True
        assert await embed.metric("aforo_sse_connections_opened_total") - opened == 1
        await embed.publish("long-1", "c-long")
        await page.wait_for("received[0].length === 1")
    finally:
        await page.close()


async def test_destroy_after_the_original_token_expired_still_revokes_the_session(
    short_sessions: Embed,
) -> None:
    embed = short_sessions
    exchanges = await embed.exchanges()
    page = await embed.browser.open(embed.widget_url("c-destroy", linger=200))
    try:
        assert await page.wait_for("window.ready") is True
        await page.wait_for(STREAMING)
        original_expiry = as_utc((await embed.session_of("c-destroy"))["expiresAt"])

        # Wait (with a deadline) until the exchanged token has expired on the gateway's clock; the
        # SDK's timer has refreshed the session in the meantime.
        deadline = time.monotonic() + SHORT_SESSION_TTL_SECONDS + 5
        while datetime.now(UTC) < original_expiry + timedelta(seconds=0.5):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)
        assert as_utc((await embed.session_of("c-destroy"))["expiresAt"]) > original_expiry

        await page.evaluate("widgets[0].unmount(), true")  # the linger ends, the stream closes, destroy()
        session = await embed.wait_revoked("c-destroy")
        assert as_utc(session["revokedAt"]) > original_expiry
        assert await embed.exchanges() - exchanges == 1  # the revoke needed no new bridge exchange
        assert embed.site.bridge_tokens["c-destroy"] == 1
    finally:
        await page.close()
