"""`python -m aforo.harness`: settings → logging → the app on 127.0.0.1:3001 (SIGTERM stops it cleanly)."""

from __future__ import annotations

from aiohttp import web

from aforo.harness.app import build_app
from aforo.harness.settings import HarnessSettings
from aforo.shared.logging import configure_logging, get_logger


def main() -> None:
    settings = HarnessSettings()
    configure_logging("harness", settings.log_level, json=settings.log_json)
    app = build_app(settings)
    get_logger(__name__).info(
        "harness_starting", url=f"http://{settings.http_host}:{settings.http_port}", api=settings.api_url
    )
    web.run_app(
        app, host=settings.http_host, port=settings.http_port, access_log=None, print=None, shutdown_timeout=5
    )


if __name__ == "__main__":
    main()
