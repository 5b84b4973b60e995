"""The SSE gateway process: lifecycle and connections; streams arrive with the SSE issue."""

from __future__ import annotations

from aforo.shared.connected_service import ConnectedService
from aforo.sse_gateway.settings import SseGatewaySettings


class SseGatewayService(ConnectedService):
    name = "sse_gateway"

    def __init__(self, settings: SseGatewaySettings) -> None:
        super().__init__(settings)
