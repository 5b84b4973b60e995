"""`python -m aforo.dispatcher`: settings → logging → service → run."""

from __future__ import annotations

import sys

from aforo.dispatcher.app import DispatcherService
from aforo.dispatcher.settings import DispatcherSettings
from aforo.shared.lifecycle import run_service
from aforo.shared.logging import configure_logging


def main() -> None:
    settings = DispatcherSettings()
    configure_logging(DispatcherService.name, settings.log_level, json=settings.log_json)
    sys.exit(run_service(DispatcherService(settings), settings))


if __name__ == "__main__":
    main()
