"""Reading one sample of a process's Prometheus `/metrics`, for tests on real processes."""

from __future__ import annotations

import re

import aiohttp

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$")


async def metric(session: aiohttp.ClientSession, url: str, name: str, **labels: str) -> float:
    """One sample of the process's /metrics (0 when absent); labels must match exactly those given."""
    async with session.get(f"{url}/metrics") as response:
        text = await response.text()
    wanted = {f'{key}="{value}"' for key, value in labels.items()}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None or match["name"] != name:
            continue
        present = set(filter(None, (match["labels"] or "").split(",")))
        if wanted <= present:
            return float(match["value"])
    return 0.0
