"""`aforo <process>`: one entrypoint for the one image, so a Deployment picks its process by command.

`aforo bridge` runs exactly what `python -m aforo.bridge` runs. `aforo <process> --help` imports the
whole process (so an image missing a module fails here, not in production) and lists the settings it
reads from the environment, with their defaults, never their values.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Final

from pydantic.fields import FieldInfo

from aforo.shared.settings import COMMON_ENV_PREFIX, ServiceSettings

PROCESSES: Final = {
    "bridge": "aforo.bridge",
    "trigger": "aforo.trigger",
    "dispatcher": "aforo.dispatcher",
    "api": "aforo.api",
    "sse-gateway": "aforo.sse_gateway",
}
"""Process name (as in `deploy/k8s` and the docs) → its package; each has `__main__.main`."""


def settings_class(package: str) -> type[ServiceSettings]:
    """The one `ServiceSettings` subclass a process defines in its `settings` module."""
    module = importlib.import_module(f"{package}.settings")
    found = [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, ServiceSettings)
        and value is not ServiceSettings
        and value.__module__ == module.__name__
    ]
    if len(found) != 1:
        raise LookupError(f"{package}.settings: expected one ServiceSettings subclass, found {len(found)}")
    return found[0]


def describe_settings(settings: type[ServiceSettings]) -> list[str]:
    """One line per setting: its service-specific variable, its default and what it is for."""
    prefix = str(settings.model_config.get("env_prefix", COMMON_ENV_PREFIX))
    lines = []
    for name, info in sorted(settings.model_fields.items()):
        lines.append(f"  {prefix}{name.upper()} (or {COMMON_ENV_PREFIX}{name.upper()})")
        lines.append(
            f"      default: {_default_text(info)}" + (f"; {info.description}" if info.description else "")
        )
    return lines


def _default_text(info: FieldInfo) -> str:
    if info.is_required():
        return "(required)"
    if info.repr is False:
        return "(secret)"
    return repr(info.default)


def _package_version() -> str:
    try:
        return version("aforo-shared")
    except PackageNotFoundError:  # running from a source tree without an install
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aforo",
        description="Run one aforo-notify process. Settings come from AFORO_* environment variables.",
    )
    parser.add_argument("--version", action="version", version=f"aforo-notify {_package_version()}")
    parser.add_argument("process", choices=sorted(PROCESSES), help="which process to run")
    parser.add_argument(
        "--help-settings",
        "--settings",
        dest="list_settings",
        action="store_true",
        help="import the process and list the settings it reads, instead of running it",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    arguments = list(sys.argv[1:] if argv is None else argv)
    # `aforo bridge --help` describes the process rather than the launcher.
    if len(arguments) >= 2 and arguments[0] in PROCESSES and arguments[1] in {"-h", "--help"}:
        arguments[1] = "--help-settings"
    options = build_parser().parse_args(arguments)
    package = PROCESSES[options.process]
    entrypoint = importlib.import_module(f"{package}.__main__")
    if options.list_settings:
        lines = [f"aforo {options.process}: same as `python -m {package}`. Settings:"]
        print("\n".join([*lines, *describe_settings(settings_class(package))]))
        return
    # The process's own main reads nothing from argv; it exits with the service's status.
    sys.argv = [f"aforo {options.process}"]
    entrypoint.main()


if __name__ == "__main__":
    main()
