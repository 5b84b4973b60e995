"""`python -m aforo.sse_gateway`: settings → logging → service → run (`aforo.shared.lifecycle.run_main`)."""

from __future__ import annotations

import gc

from aforo.shared.lifecycle import run_main
from aforo.sse_gateway.app import SseGatewayService
from aforo.sse_gateway.settings import SseGatewaySettings


def _freeze_startup_objects() -> None:
    # Everything allocated so far lives as long as the process: take it out of the collector's
    # full passes, which otherwise walk it again and again while thousands of streams are open.
    gc.freeze()


def main() -> None:
    run_main(
        SseGatewayService,
        SseGatewaySettings,
        service_name=SseGatewayService.name,
        before_run=_freeze_startup_objects,
    )


if __name__ == "__main__":
    main()
