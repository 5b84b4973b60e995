"""`python -m aforo.api`: settings → logging → service → run (`aforo.shared.lifecycle.run_main`)."""

from __future__ import annotations

from aforo.api.app import ApiService
from aforo.api.settings import ApiSettings
from aforo.shared.lifecycle import run_main


def main() -> None:
    run_main(ApiService, ApiSettings, service_name=ApiService.name)


if __name__ == "__main__":
    main()
