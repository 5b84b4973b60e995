"""An integrator's site for the browser tests, on 127.0.0.1: its server signs bridge tokens (and
counts them), and it serves a widget page (which mounts widgets with the SDK, of one or several
tenants) and a host page (which embeds the widget page in an iframe, next to a sibling frame of its
own origin). Served on several ports, it is several origins.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.support.sse_harness import EmbedTenant

WIDGET_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>widget</title>
<script src="{gateway}/sdk/aforo-embed.js"></script></head>
<body><div id="widgets"></div>
<script>
const params = new URLSearchParams(location.search);
const config = {config};
// ?tenants=t1,t2 mounts `widgets` widgets of each (the site's first tenant by default).
const pageTenants = (params.get("tenants") || Object.keys(config.tenants)[0]).split(",");
window.received = [];       // per mounted widget: the events its widget.on handlers got
window.widgetInbound = [];  // per mounted widget: the host messages its widget.on handlers got
window.widgetTenants = [];  // per mounted widget: its tenant
window.pageEvents = [];     // events seen by AforoEmbed.on (page-wide), as [tenant, invoiceId]
window.inbound = [];        // host messages accepted by AforoEmbed.on (page-wide)
window.inboundTenants = []; // per accepted host message: the tenants it was delivered for
window.rawInbound = [];     // every message of an inbound type that reached this window (raw listener)
window.widgets = [];
window.mountError = null;
AforoEmbed.configure({{
  lingerMs: Number(params.get("linger") || 30000), backoffBaseMs: 200, backoffMaxMs: 1000,
}});
for (const type of AforoEmbed.inboundTypes) {{
  AforoEmbed.on(type, (message, context) => {{ inbound.push(message); inboundTenants.push(context.tenants); }});
}}
for (const type of AforoEmbed.eventTypes) {{
  AforoEmbed.on(type, (message, context) => pageEvents.push([context.tenant, message.payload.invoiceId]));
}}
// Registered after the SDK's own listener (its script is in <head>), so it runs after the SDK's.
window.addEventListener("message", (event) => {{
  if (event.data && AforoEmbed.inboundTypes.includes(event.data.type)) {{
    rawInbound.push({{type: event.data.type, payload: event.data.payload, fromParent: event.source === window.parent}});
  }}
}});
window.mountWidget = async function (tenant = pageTenants[0]) {{
  const index = received.length;
  received.push([]);
  widgetInbound.push([]);
  widgetTenants.push(tenant);
  const widget = await AforoEmbed.mount({{
    tenant,
    gatewayUrl: config.gateway,
    embedKey: config.tenants[tenant],
    getBridgeToken: () => fetch(
      "/bridge-token?tenant=" + encodeURIComponent(tenant) + "&customer=" + encodeURIComponent(params.get("customer"))
    ).then((response) => response.text()),
  }});
  for (const type of AforoEmbed.eventTypes) widget.on(type, (message) => received[index].push(message));
  for (const type of AforoEmbed.inboundTypes) widget.on(type, (message) => widgetInbound[index].push(message));
  widgets.push(widget);
  return index;
}};
const perTenant = Number(params.get("widgets") || 1);
window.ready = Promise.all(
  pageTenants.flatMap((tenant) => Array.from({{length: perTenant}}, () => mountWidget(tenant)))
).then(() => true, (error) => {{ window.mountError = error.code || String(error); return false; }});
</script></body></html>
"""

HOST_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>host</title>
<script src="{gateway}/sdk/aforo-embed.js"></script></head>
<body>
<script>
const params = new URLSearchParams(location.search);
const widgetUrl = params.get("widget");
const widgetOrigin = new URL(widgetUrl).origin;
window.raw = [];      // the raw window.addEventListener('message') pattern
window.viaSdk = [];   // AforoEmbed.on in the host page
window.addEventListener("message", (event) => {{
  if (event.origin === widgetOrigin) raw.push(event.data);
}});
AforoEmbed.configure({{widgetOrigins: [widgetOrigin]}});
for (const type of AforoEmbed.eventTypes) AforoEmbed.on(type, (message) => viaSdk.push(message));
const frame = document.createElement("iframe");
frame.src = widgetUrl;
document.body.appendChild(frame);
window.postToWidget = (message) => frame.contentWindow.postMessage(message, widgetOrigin);
// A sibling frame of this page's own origin (so of an allowed origin) that is not the widget's parent:
// `send` runs in the sibling's realm, so the widget sees event.source === the sibling.
const sibling = document.createElement("iframe");
sibling.srcdoc = "<script>window.send = (target, message, origin) => target.postMessage(message, origin);<\\/script>";
document.body.appendChild(sibling);
window.siblingReady = () => typeof (sibling.contentWindow && sibling.contentWindow.send) === "function";
window.postFromSibling = (message) => sibling.contentWindow.send(frame.contentWindow, message, widgetOrigin);
</script></body></html>
"""


@dataclass
class IntegratorSite:
    """The pages and the bridge-token endpoint, shared by every port the site is served on."""

    gateway_url: str
    # Seeded once the site's origins (ports) are known; the first is the pages' default tenant.
    tenants: dict[str, EmbedTenant] = field(default_factory=dict)
    bridge_tokens: Counter[str] = field(default_factory=Counter)  # by customer
    servers: list[TestServer] = field(default_factory=list)

    def add_tenant(self, tenant: EmbedTenant) -> None:
        self.tenants[tenant.tenant_id] = tenant

    def config_json(self) -> str:
        assert self.tenants, "seed a tenant before serving pages"
        return json.dumps(
            {
                "gateway": self.gateway_url,
                "tenants": {tenant_id: tenant.embed_key_id for tenant_id, tenant in self.tenants.items()},
            }
        )

    def app(self) -> web.Application:
        async def widget(_: web.Request) -> web.Response:
            page = WIDGET_PAGE.format(gateway=html.escape(self.gateway_url), config=self.config_json())
            return web.Response(text=page, content_type="text/html")

        async def host(_: web.Request) -> web.Response:
            return web.Response(
                text=HOST_PAGE.format(gateway=html.escape(self.gateway_url)), content_type="text/html"
            )

        async def bridge_token(request: web.Request) -> web.Response:
            """The integrator's server: it knows who is logged in and signs for that customer."""
            customer = request.query["customer"]
            tenant = self.tenants[request.query["tenant"]]
            self.bridge_tokens[customer] += 1
            return web.Response(text=tenant.bridge_token(customer))

        app = web.Application()
        app.add_routes(
            [
                web.get("/widget.html", widget),
                web.get("/host.html", host),
                web.get("/bridge-token", bridge_token),
            ]
        )
        return app

    async def serve(self) -> str:
        """One more origin (`http://127.0.0.1:<port>`) serving the site."""
        server = TestServer(self.app(), host="127.0.0.1")
        await server.start_server()
        self.servers.append(server)
        return f"http://127.0.0.1:{server.port}"

    async def close(self) -> None:
        for server in self.servers:
            await server.close()
