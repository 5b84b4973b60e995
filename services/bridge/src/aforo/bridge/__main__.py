"""`python -m aforo.bridge`: settings → logging → service → run (`aforo.shared.lifecycle.run_main`)."""

from __future__ import annotations

from aforo.bridge.app import BridgeService
from aforo.bridge.settings import BridgeSettings
from aforo.shared.lifecycle import run_main


def main() -> None:
    run_main(BridgeService, BridgeSettings, service_name=BridgeService.name)


if __name__ == "__main__":
    main()
