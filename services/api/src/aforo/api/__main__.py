"""`python -m aforo.api`: settings → logging → service → run."""

from __future__ import annotations

import sys

from aforo.api.app import ApiService
from aforo.api.settings import ApiSettings
from aforo.shared.lifecycle import run_service
from aforo.shared.logging import configure_logging


def main() -> None:
    settings = ApiSettings()
    configure_logging(ApiService.name, settings.log_level, json=settings.log_json)
    sys.exit(run_service(ApiService(settings), settings))


if __name__ == "__main__":
    main()
