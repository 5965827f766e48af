"""Click options derived from lrod.settings: the flag's name, its LROD_*
variable, its type, help and default all come from the settings field.

    @settings_options(SERVE)          # every field whose Flag lists "serve"
    def serve(**params): ...
    settings = build(Settings, params, workers=build(WorkerSettings, params))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, TypeVar

import click

from lrod.settings import FLAG_SOURCES, Flag

_F = TypeVar("_F", bound=Callable[..., Any])
_S = TypeVar("_S")


def _flags(cls: type) -> list[tuple[dataclasses.Field[Any], Flag]]:
    return [(f, f.metadata["flag"]) for f in dataclasses.fields(cls) if "flag" in f.metadata]


def flag_name(f: dataclasses.Field[Any], flag: Flag) -> str:
    return flag.name or f.name.replace("_", "-")


def envvar(f: dataclasses.Field[Any], flag: Flag) -> str:
    return "LROD_" + flag_name(f, flag).upper().replace("-", "_")


def param_name(f: dataclasses.Field[Any], flag: Flag) -> str:
    return flag_name(f, flag).replace("-", "_")


def option_for(cls: type, field_name: str, command: str) -> Callable[[_F], _F]:
    """The click option of one settings field, as `command` offers it."""
    for f, flag in _flags(cls):
        if f.name == field_name:
            return _option(f, flag, command)
    raise KeyError(f"{cls.__name__}.{field_name} is not a flag")


def _option(
    f: dataclasses.Field[Any], flag: Flag, command: str, callback: Any = None
) -> Callable[[_F], _F]:
    extra = flag.per_command.get(command, {})
    help_text: str = extra.get("help", flag.help)
    minimum = extra.get("minimum", flag.minimum)
    default = f.default
    name = flag_name(f, flag)
    kwargs: dict[str, Any] = {
        "envvar": envvar(f, flag),
        "show_envvar": True,
        "help": help_text,
        "metavar": flag.metavar,
        "callback": callback,
    }
    if isinstance(default, bool):
        decls = [f"--{name}/--no-{name}"]
        kwargs.update(default=default, show_default=True)
    elif isinstance(default, timedelta):
        decls = [f"--{name}"]
        kwargs.update(
            default=default.total_seconds(),
            show_default=True,
            type=click.FloatRange(min=minimum),
        )
    elif isinstance(default, int):
        decls = [f"--{name}"]
        kwargs.update(default=default, show_default=True, type=click.IntRange(min=minimum))
    elif isinstance(default, float):
        decls = [f"--{name}"]
        kwargs.update(default=default, show_default=True, type=click.FloatRange(min=minimum))
    else:
        decls = [f"--{name}"]
        # None: off unless given; "": none (the help says so).
        kwargs.update(default=default, show_default=default not in (None, ""))
    return click.option(*decls, param_name(f, flag), **kwargs)


def settings_options(
    command: str, callbacks: Mapping[str, Callable[..., Any]] | None = None
) -> Callable[[_F], _F]:
    """Every settings flag that `command` offers, in FLAG_SOURCES order.
    `callbacks` validates a parameter by name (a click option callback)."""
    checks = callbacks or {}

    def decorate(func: _F) -> _F:
        for cls in reversed(FLAG_SOURCES):
            for f, flag in reversed(_flags(cls)):
                if command in flag.commands:
                    check = checks.get(param_name(f, flag))
                    func = _option(f, flag, command, check)(func)
        return func

    return decorate


def build(cls: type[_S], params: Mapping[str, Any], **overrides: Any) -> _S:
    """An instance of a settings class from the CLI's parameters: each flag
    that was offered takes its value (seconds become a timedelta); the rest
    keep their defaults unless given in `overrides`."""
    values: dict[str, Any] = {}
    for f, flag in _flags(cls):
        key = param_name(f, flag)
        if key in params:
            value = params[key]
            if isinstance(f.default, timedelta):
                value = timedelta(seconds=value)
            values[f.name] = value
    values.update(overrides)
    return cls(**values)
