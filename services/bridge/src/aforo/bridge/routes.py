"""The producer-topic mapping: which SYSTEM event and/or widget event a producer topic becomes.

Loaded once at start from the shipped `default_routes.toml` or a file named by settings; every
entry is checked against the catalog so a typo fails the start, not a message at 3 a.m.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from aforo.shared.catalog import SYSTEM_EVENTS, WIDGET_EVENTS, SystemEvent, WidgetEvent


class RouteConfigError(ValueError):
    """The mapping file is invalid; the message names the topic and key."""


@dataclass(frozen=True)
class TopicRoute:
    source_topic: str
    system_event: SystemEvent | None
    widget_event: WidgetEvent | None


def parse_routes(document: dict[str, Any], source_topic_prefix: str = "") -> dict[str, TopicRoute]:
    """Validate a parsed mapping document into routes keyed by (prefixed) producer topic."""
    table = document.get("routes")
    if not isinstance(table, dict) or not table:
        raise RouteConfigError("routes: expected a non-empty table of producer topics")
    routes: dict[str, TopicRoute] = {}
    for topic, entry in table.items():
        where = f"routes.{topic!r}"
        if not isinstance(entry, dict):
            raise RouteConfigError(f"{where}: expected a table with 'system' and/or 'widget'")
        unknown = set(entry) - {"system", "widget"}
        if unknown:
            raise RouteConfigError(f"{where}: unknown key(s) {sorted(unknown)}")
        system_name, widget_name = entry.get("system"), entry.get("widget")
        if system_name is None and widget_name is None:
            raise RouteConfigError(f"{where}: needs 'system', 'widget' or both")
        if system_name is not None and system_name not in SYSTEM_EVENTS:
            raise RouteConfigError(f"{where}.system: {system_name!r} is not a SYSTEM event")
        if widget_name is not None and widget_name not in WIDGET_EVENTS:
            raise RouteConfigError(f"{where}.widget: {widget_name!r} is not a widget event")
        full_topic = f"{source_topic_prefix}{topic}"
        routes[full_topic] = TopicRoute(
            source_topic=full_topic,
            system_event=SYSTEM_EVENTS[system_name] if system_name is not None else None,
            widget_event=WIDGET_EVENTS[widget_name] if widget_name is not None else None,
        )
    return routes


def load_routes(path: Path | None = None, source_topic_prefix: str = "") -> dict[str, TopicRoute]:
    """The mapping from `path`, or the shipped defaults."""
    if path is None:
        text = files("aforo.bridge").joinpath("default_routes.toml").read_text(encoding="utf-8")
    else:
        text = path.read_text(encoding="utf-8")
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise RouteConfigError(f"{path or 'default_routes.toml'}: {error}") from error
    return parse_routes(document, source_topic_prefix)
