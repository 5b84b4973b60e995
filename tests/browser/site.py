"""An integrator's site for the browser tests, on 127.0.0.1: its server signs bridge tokens (and
counts them), and it serves a widget page (which mounts widgets with the SDK) and a host page
(which embeds the widget page in an iframe). Served on several ports, it is several origins.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.integration.test_sse_harness import EmbedTenant

WIDGET_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>widget</title>
<script src="{gateway}/sdk/aforo-embed.js"></script></head>
<body><div id="widgets"></div>
<script>
const params = new URLSearchParams(location.search);
const config = {config};
window.received = [];     // per mounted widget: the messages its widget.on handlers got
window.inbound = [];      // host messages accepted by AforoEmbed.on
window.widgets = [];
window.mountError = null;
AforoEmbed.configure({{
  lingerMs: Number(params.get("linger") || 30000), backoffBaseMs: 200, backoffMaxMs: 1000,
}});
for (const type of AforoEmbed.inboundTypes) AforoEmbed.on(type, (message) => inbound.push(message));
window.mountWidget = async function () {{
  const index = received.length;
  received.push([]);
  const widget = await AforoEmbed.mount({{
    tenant: config.tenant,
    gatewayUrl: config.gateway,
    embedKey: config.embedKey,
    getBridgeToken: () => fetch("/bridge-token?customer=" + encodeURIComponent(params.get("customer")))
      .then((response) => response.text()),
  }});
  for (const type of AforoEmbed.eventTypes) widget.on(type, (message) => received[index].push(message));
  widgets.push(widget);
  return index;
}};
window.ready = Promise.all(Array.from({{length: Number(params.get("widgets") || 1)}}, () => mountWidget()))
  .then(() => true, (error) => {{ window.mountError = error.code || String(error); return false; }});
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
</script></body></html>
"""


@dataclass
class IntegratorSite:
    """The pages and the bridge-token endpoint, shared by every port the site is served on."""

    gateway_url: str
    tenant: EmbedTenant | None = None  # seeded once the site's origins (ports) are known
    bridge_tokens: Counter[str] = field(default_factory=Counter)
    servers: list[TestServer] = field(default_factory=list)

    def config_json(self) -> str:
        assert self.tenant is not None
        return json.dumps(
            {
                "tenant": self.tenant.tenant_id,
                "gateway": self.gateway_url,
                "embedKey": self.tenant.embed_key_id,
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
            assert self.tenant is not None
            self.bridge_tokens[customer] += 1
            return web.Response(text=self.tenant.bridge_token(customer))

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
