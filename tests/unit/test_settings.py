"""One source of defaults: every flag, its help, default and LROD_* variable
come from lrod.settings."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import click
import pytest
from click.testing import CliRunner

from lrod import cli
from lrod.options import build, envvar, flag_name
from lrod.settings import (
    CLIENT,
    DB,
    DEFAULT_LEASE,
    FLAG_SOURCES,
    MAIN,
    SERVE,
    WORKER,
    Settings,
    WorkerSettings,
)

COMMANDS = {
    MAIN: [[]],
    SERVE: [["serve"]],
    WORKER: [["worker"]],
    DB: [["db", "upgrade"], ["attempts"]],
    CLIENT: [["get"], ["list"], ["submit"], ["watch"]],
}


def _help(args: list[str]) -> str:
    # Wide, so that click does not wrap a variable's name across lines.
    result = CliRunner().invoke(cli.main, [*args, "--help"], terminal_width=400)
    assert result.exit_code == 0, result.output
    return result.output


def _entry(text: str, flag: str) -> str | None:
    """The help of one option: its line and the lines that continue it."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.lstrip().startswith(flag + " ") or line.strip() == flag:
            entry = [line]
            for more in lines[index + 1 :]:
                if more.lstrip().startswith("-") or not more.strip():
                    break
                entry.append(more.strip())
            return " ".join(entry)
    return None


def _flags() -> list[tuple[type, dataclasses.Field[object]]]:
    return [
        (cls, f) for cls in FLAG_SOURCES for f in dataclasses.fields(cls) if "flag" in f.metadata
    ]


@pytest.mark.parametrize(("cls", "f"), _flags(), ids=lambda v: getattr(v, "name", None))
def test_each_flag_shows_its_variable_and_default(cls: type, f: dataclasses.Field[object]) -> None:
    flag = f.metadata["flag"]
    for command in flag.commands:
        for args in COMMANDS[command]:
            text = _help(args)
            line = _entry(text, f"--{flag_name(f, flag)}")
            assert line is not None, f"{args}: no --{flag_name(f, flag)}"
            assert f"env var: {envvar(f, flag)}" in line
            default = f.default
            if isinstance(default, timedelta):
                default = default.total_seconds()
            if isinstance(default, bool):
                assert "default: " in line
            elif default == "":
                assert "(default: none)" in line
            elif default is not None:
                assert f"default: {default}" in line
            else:
                assert "(default: off)" in line


def test_the_lease_default_lives_in_one_place() -> None:
    assert WorkerSettings().lease == DEFAULT_LEASE == timedelta(seconds=30)
    assert "default: 30.0" in _help(["serve"])
    assert "--lease-seconds" in _help(["worker"])


def test_worker_refuses_zero_concurrency_and_its_help_agrees() -> None:
    text = _help(["worker"])
    assert "0 serves" not in text
    assert "x>=1" in text
    result = CliRunner().invoke(cli.main, ["worker", "--concurrency", "0"])
    assert result.exit_code == 2
    assert "--concurrency" in result.output


def test_build_takes_the_flags_and_keeps_the_defaults() -> None:
    ctx = click.Context(cli.serve)
    params = {p.name: p.get_default(ctx) for p in cli.serve.params if p.name is not None}
    params["lease_seconds"] = 2.5
    built = cli._settings(params)
    assert built.workers is not None
    assert built.workers.lease == timedelta(seconds=2.5)
    defaults = Settings()
    assert dataclasses.replace(built, workers=defaults.workers) == defaults
    assert build(WorkerSettings, {}, worker_id="w").worker_id == "w"


def test_version() -> None:
    result = CliRunner().invoke(cli.main, ["--version"])
    assert result.exit_code == 0
    assert result.output.startswith("lrod ")
