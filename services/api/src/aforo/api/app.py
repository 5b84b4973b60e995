"""The API process: lifecycle and connections; its routes arrive with the API issue."""

from __future__ import annotations

from aforo.api.settings import ApiSettings
from aforo.shared.connected_service import ConnectedService


class ApiService(ConnectedService):
    name = "api"

    def __init__(self, settings: ApiSettings) -> None:
        super().__init__(settings)
