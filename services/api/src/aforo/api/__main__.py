"""`python -m aforo.api`: settings → logging → service → run."""

from __future__ import annotations

import sys

from aforo.api.app import ApiConfigError, ApiService
from aforo.api.settings import ApiSettings
from aforo.shared.lifecycle import run_service
from aforo.shared.logging import configure_logging, get_logger

EXIT_MISCONFIGURED = 2


def main() -> None:
    settings = ApiSettings()
    configure_logging(ApiService.name, settings.log_level, json=settings.log_json)
    try:
        service = ApiService(settings)
    except ApiConfigError as error:
        get_logger(__name__).error("api_misconfigured", error=str(error))
        sys.exit(EXIT_MISCONFIGURED)
    sys.exit(run_service(service, settings))


if __name__ == "__main__":
    main()
