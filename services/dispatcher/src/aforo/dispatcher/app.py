"""The dispatcher process: lifecycle and connections (delivery pipeline arrives with its issue)."""

from __future__ import annotations

from aforo.dispatcher.settings import DispatcherSettings
from aforo.shared.connected_service import ConnectedService


class DispatcherService(ConnectedService):
    name = "dispatcher"

    def __init__(self, settings: DispatcherSettings) -> None:
        super().__init__(settings)
