"""The one logger setup: structlog, JSON lines on stdout, bound with service/tenant/event ids.

Context (`tenant_id`, `event_id`, `endpoint_id`, ...) is bound with `bind_event_context` through a
context variable, so every line logged while handling an event carries it without passing loggers around.
Secrets and full bodies are never passed to a logger; `redact_secrets` is a last line of defence.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Mapping, MutableMapping
from types import MappingProxyType
from typing import Any, Final

import structlog

SECRET_KEYS = frozenset({"secret", "secrets", "password", "token", "authorization", "api_key", "jwt"})


def redact_secrets(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: never let a value under a secret-looking key reach the output."""
    for key in list(event_dict):
        if key.lower() in SECRET_KEYS:
            event_dict[key] = "[redacted]"
    return event_dict


def configure_logging(service: str, level: str = "INFO", *, json: bool = True) -> None:
    """Configure structlog and the stdlib root logger (aiokafka, aiohttp, faust log through it)."""
    numeric_level = logging.getLevelName(level.upper())
    if not isinstance(numeric_level, int):
        raise ValueError(f"log_level: unknown level {level!r}")

    def add_service(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        event_dict.setdefault("service", service)
        return event_dict

    shared_processors: list[structlog.types.Processor] = [
        merge_event_ids,  # before structlog's: an event's ids win over other bound keys of the same name
        structlog.contextvars.merge_contextvars,
        add_service,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            *shared_processors,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stdout),
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared_processors,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric_level)
    structlog.contextvars.clear_contextvars()


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    """A logger carrying whatever context is bound at call time."""
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger


_NO_IDS: Final[Mapping[str, str | int]] = MappingProxyType({})
_EVENT_IDS: contextvars.ContextVar[Mapping[str, str | int]] = contextvars.ContextVar(
    "aforo_event_ids", default=_NO_IDS
)
"""The ids bound by `bind_event_context`, all in one context variable: one set and one reset per block
(the dispatcher enters one per delivery attempt), where structlog's own binding sets one variable per id."""


def merge_event_ids(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: the ids bound by `bind_event_context` (a call's own keys win)."""
    for key, value in _EVENT_IDS.get().items():
        event_dict.setdefault(key, value)
    return event_dict


class EventContext:
    """Ids bound for the lines logged inside a `with` block (nested blocks add to the outer ones).
    A class, not a generator-based context manager: it is entered once per delivery attempt."""

    __slots__ = ("_ids", "_token")

    def __init__(self, ids: dict[str, str | int | None]) -> None:
        self._ids = ids
        self._token: contextvars.Token[Mapping[str, str | int]] | None = None

    def __enter__(self) -> None:
        present = {key: value for key, value in self._ids.items() if value is not None}
        self._token = _EVENT_IDS.set({**_EVENT_IDS.get(), **present})

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None:
            _EVENT_IDS.reset(self._token)
            self._token = None


def bind_event_context(**ids: str | int | None) -> EventContext:
    """Bind ids (tenant_id, event_id, ...) for the lines logged inside the block."""
    return EventContext(ids)
