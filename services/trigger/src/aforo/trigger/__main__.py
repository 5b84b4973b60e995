"""`python -m aforo.trigger`: settings → logging → service → run."""

from __future__ import annotations

import sys

from aforo.shared.lifecycle import run_service
from aforo.shared.logging import configure_logging
from aforo.trigger.app import TriggerService
from aforo.trigger.settings import TriggerSettings


def main() -> None:
    settings = TriggerSettings()
    configure_logging(TriggerService.name, settings.log_level, json=settings.log_json)
    sys.exit(run_service(TriggerService(settings), settings))


if __name__ == "__main__":
    main()
