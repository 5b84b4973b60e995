"""`python -m aforo.sse_gateway`: settings → logging → service → run."""

from __future__ import annotations

import sys

from aforo.shared.lifecycle import run_service
from aforo.shared.logging import configure_logging
from aforo.sse_gateway.app import SseGatewayService
from aforo.sse_gateway.settings import SseGatewaySettings


def main() -> None:
    settings = SseGatewaySettings()
    configure_logging(SseGatewayService.name, settings.log_level, json=settings.log_json)
    sys.exit(run_service(SseGatewayService(settings), settings))


if __name__ == "__main__":
    main()
