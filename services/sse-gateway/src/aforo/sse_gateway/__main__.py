"""`python -m aforo.sse_gateway`: settings → logging → service → run."""

from __future__ import annotations

import gc
import sys

from aforo.shared.lifecycle import run_service
from aforo.shared.logging import configure_logging, get_logger
from aforo.sse_gateway.app import SseGatewayConfigError, SseGatewayService
from aforo.sse_gateway.settings import SseGatewaySettings

EXIT_MISCONFIGURED = 2


def main() -> None:
    settings = SseGatewaySettings()
    configure_logging(SseGatewayService.name, settings.log_level, json=settings.log_json)
    try:
        service = SseGatewayService(settings)
    except SseGatewayConfigError as error:
        get_logger(__name__).error("sse_gateway_misconfigured", error=str(error))
        sys.exit(EXIT_MISCONFIGURED)
    # Everything allocated so far lives as long as the process: take it out of the collector's
    # full passes, which otherwise walk it again and again while thousands of streams are open.
    gc.freeze()
    sys.exit(run_service(service, settings))


if __name__ == "__main__":
    main()
