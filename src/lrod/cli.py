"""The `lrod` command line. Every option has an LROD_* environment variable.

Server commands (serve, worker, db, attempts) are here; the client commands
(job-types, submit, get, list, cancel, delete, wait, watch) live in
lrod.client. The server's modules are imported only when a server command
runs, so that client commands start quickly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from lrod import logs
from lrod.client.commands import COMMANDS
from lrod.options import build, settings_options
from lrod.settings import (
    DB,
    MAIN,
    SERVE,
    WORKER,
    HttpSettings,
    LogSettings,
    ManagerSettings,
    Settings,
    WebhookSettings,
    WorkerSettings,
)

if TYPE_CHECKING:
    from lrod.jobs.registry import Registry


def _check_address(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    from lrod.metrics import parse_address

    if value:
        try:
            parse_address(value)
        except ValueError as error:
            raise click.BadParameter(str(error)) from None
    return value or None


def _check_proxies(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    import ipaddress

    for item in (part.strip() for part in value.split(",")):
        if item:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise click.BadParameter(f"{item!r} is not an address or network") from None
    return value


def _check_public_url(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> str | None:
    if value and not value.startswith(("http://", "https://")):
        raise click.BadParameter(
            "must start with http:// or https://, e.g. https://jobs.example.com"
        )
    return value


def _check_webhooks(kind: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """Malformed webhook flags fail at startup with the flag's name."""

    def check(_ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
        from lrod.webhooks.config import check_setting

        try:
            check_setting(kind, value)
        except ValueError as error:
            raise click.BadParameter(str(error)) from None
        return value

    return check


_CHECKS = {
    "metrics_address": _check_address,
    "http_trusted_proxies": _check_proxies,
    "http_public_url": _check_public_url,
    "webhook_secrets": _check_webhooks("secrets"),
    "webhook_allow": _check_webhooks("allow"),
    "webhook_schedule": _check_webhooks("schedule"),
    "webhook_schemes": _check_webhooks("schemes"),
}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="lrod", prog_name="lrod", message="%(prog)s %(version)s")
@settings_options(MAIN)
def main(**params: Any) -> None:
    """lrod: long-running operations over gRPC.

    Every option can also be set by the LROD_* environment variable shown
    beside it in each command's --help."""
    log_settings = build(LogSettings, params)
    logs.configure(log_settings.level, log_settings.json)


def _registry(spec: str) -> Registry:
    from lrod.jobs.registry import load_registry

    try:
        return load_registry(spec)
    except (ImportError, AttributeError, TypeError) as error:
        raise click.BadParameter(f"cannot load {spec!r}: {error}", param_hint="--jobs") from None


def _settings(params: dict[str, Any], **overrides: Any) -> Settings:
    return build(
        Settings,
        params,
        workers=build(WorkerSettings, params),
        manager=build(ManagerSettings, params),
        http=build(HttpSettings, params),
        webhooks=build(WebhookSettings, params),
        **overrides,
    )


@main.command()
@settings_options(SERVE, _CHECKS)
def serve(**params: Any) -> None:
    """Serve the API, with embedded workers unless --concurrency 0."""
    from lrod.serving import AddressInUse, check_free, serve_processes

    settings = _settings(params)
    registry = _registry(settings.jobs)
    try:
        if settings.processes > 1:
            root = click.get_current_context().find_root().params
            code = serve_processes(settings, settings.processes, build(LogSettings, root))
            raise SystemExit(code)
        check_free(settings.address)
        if settings.http_address is not None:
            check_free(settings.http_address)
    except AddressInUse as error:
        raise click.ClickException(str(error)) from None
    from lrod.app import run

    asyncio.run(run(settings, registry))


@main.command()
@settings_options(WORKER, _CHECKS)
def worker(**params: Any) -> None:
    """Run workers only (no API)."""
    from lrod.app import run

    settings = _settings(params, serve_api=False)
    asyncio.run(run(settings, _registry(settings.jobs)))


@main.group()
def db() -> None:
    """Database administration."""


@db.command("upgrade")
@settings_options(DB)
def db_upgrade(database_url: str) -> None:
    """Apply the schema migrations (safe to run from several processes)."""
    from lrod.store.migrate import upgrade

    upgrade(database_url)
    click.echo("database is up to date")


@main.command()
@settings_options(DB)
@click.argument("name")
def attempts(database_url: str, name: str) -> None:
    """Show the attempt history of an operation, internal errors included
    (operators only: reads the database directly)."""
    from lrod.operator import print_attempts

    asyncio.run(print_attempts(database_url, name))


@main.command()
@settings_options(DB)
@click.option(
    "--state",
    type=click.Choice(["pending", "delivered", "failed"]),
    help="Only deliveries in this state.",
)
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
def webhooks(database_url: str, state: str | None, limit: int) -> None:
    """List completion webhook deliveries, newest first (operators only:
    reads the database directly)."""
    from lrod.operator import print_deliveries

    asyncio.run(print_deliveries(database_url, state, limit))


for _command in COMMANDS:
    main.add_command(_command)
