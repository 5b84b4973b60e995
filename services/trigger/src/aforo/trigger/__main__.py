"""`python -m aforo.trigger`: settings → logging → service → run (`aforo.shared.lifecycle.run_main`)."""

from __future__ import annotations

from aforo.shared.lifecycle import run_main
from aforo.trigger.app import TriggerService
from aforo.trigger.settings import TriggerSettings


def main() -> None:
    run_main(TriggerService, TriggerSettings, service_name=TriggerService.name)


if __name__ == "__main__":
    main()
