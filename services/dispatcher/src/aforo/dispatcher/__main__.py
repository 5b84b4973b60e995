"""`python -m aforo.dispatcher`: settings → logging → service → run (`aforo.shared.lifecycle.run_main`)."""

from __future__ import annotations

from aforo.dispatcher.app import DispatcherService
from aforo.dispatcher.settings import DispatcherSettings
from aforo.shared.lifecycle import run_main


def main() -> None:
    run_main(DispatcherService, DispatcherSettings, service_name=DispatcherService.name)


if __name__ == "__main__":
    main()
