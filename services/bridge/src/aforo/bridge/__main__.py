"""`python -m aforo.bridge`: settings → logging → service → run."""

from __future__ import annotations

import sys

from aforo.bridge.app import BridgeService
from aforo.bridge.settings import BridgeSettings
from aforo.shared.lifecycle import run_service
from aforo.shared.logging import configure_logging


def main() -> None:
    settings = BridgeSettings()
    configure_logging(BridgeService.name, settings.log_level, json=settings.log_json)
    sys.exit(run_service(BridgeService(settings), settings))


if __name__ == "__main__":
    main()
