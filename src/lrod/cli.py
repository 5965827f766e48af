"""The `lrod` command line. Every option has an LROD_* environment variable.

Server commands (serve, worker, db, attempts) are here; the client commands
(job-types, submit, get, list, cancel, delete, wait, watch) live in
lrod.client. The server's modules are imported only when a server command
runs, so that client commands start quickly.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
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
    ConfigurationError,
    HttpSettings,
    LogSettings,
    ManagerSettings,
    QuotaSettings,
    SecuritySettings,
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


def _check_database_url(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    from lrod.store.engine import url_problem

    problem = url_problem(value)
    if problem is not None:
        # One line (no usage text): the value may come from LROD_DATABASE_URL.
        raise ConfigurationFailed(f"--database-url (LROD_DATABASE_URL): {problem}")
    return value


class ConfigurationFailed(click.ClickException):
    """A setting that cannot work: one or two lines, exit 2 (as a usage error)."""

    exit_code = 2


@contextlib.contextmanager
def _configuration_errors() -> Iterator[None]:
    try:
        yield
    except ConfigurationError as error:
        raise ConfigurationFailed(str(error)) from None


_CHECKS = {
    "database_url": _check_database_url,
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


_FREE_IT = "Stop the process that holds it (another lrod?) or choose another port."


def _check_free(*listeners: tuple[str, str | None]) -> None:
    """A port in use, before anything starts: one line naming the flag."""
    from lrod.serving import AddressInUse, check_free

    for flag, address in listeners:
        if address is None:
            continue
        try:
            check_free(address)
        except AddressInUse as error:
            raise ConfigurationFailed(f"{error} ({flag}).\n{_FREE_IT}") from None


def _settings(params: dict[str, Any], **overrides: Any) -> Settings:
    return build(
        Settings,
        params,
        workers=build(WorkerSettings, params),
        manager=build(ManagerSettings, params),
        http=build(HttpSettings, params),
        webhooks=build(WebhookSettings, params),
        security=build(SecuritySettings, params),
        quotas=build(QuotaSettings, params),
        **overrides,
    )


@main.command()
@settings_options(SERVE, _CHECKS)
def serve(**params: Any) -> None:
    """Serve the API, with embedded workers unless --concurrency 0."""
    from lrod.serving import AddressInUse, serve_processes

    settings = _settings(params)
    registry = _registry(settings.jobs)
    from lrod.auth.config import check_security

    # The safe default and unusable TLS/token/JWKS files: refused before
    # anything starts (exit 2 with the fix).
    with _configuration_errors():
        check_security(settings)
    if settings.processes > 1:
        try:
            root = click.get_current_context().find_root().params
            code = serve_processes(settings, settings.processes, build(LogSettings, root))
        except AddressInUse as error:
            raise ConfigurationFailed(f"{error}.\n{_FREE_IT}") from None
        raise SystemExit(code)
    _check_free(
        ("--address", settings.address),
        ("--http-address", settings.http_address),
        ("--metrics-address", settings.metrics_address),
    )
    from lrod.app import run

    with _configuration_errors():
        asyncio.run(run(settings, registry))


@main.command()
@settings_options(WORKER, _CHECKS)
def worker(**params: Any) -> None:
    """Run workers only (no API)."""
    from lrod.app import run

    settings = _settings(params, serve_api=False)
    registry = _registry(settings.jobs)
    _check_free(("--metrics-address", settings.metrics_address))
    with _configuration_errors():
        asyncio.run(run(settings, registry))


@main.group()
def token() -> None:
    """Bearer tokens for --auth-token-file."""


@token.command("new")
@click.argument("principal")
@click.option(
    "--role", "roles", multiple=True, help="A role to give (repeatable): admin, readonly."
)
def token_new(principal: str, roles: tuple[str, ...]) -> None:
    """Print a new random token (first line: give it to the caller) and the
    [[principal]] entry with its SHA-256 (append it to the token file)."""
    import json

    from lrod.auth.tokens import new_token, token_digest

    secret = new_token()
    click.echo(secret)
    click.echo("")
    click.echo("[[principal]]")
    click.echo(f"name = {json.dumps(principal)}")
    click.echo(f'token_sha256 = "{token_digest(secret)}"')
    click.echo(f"roles = {json.dumps(list(roles))}")


@main.group()
def db() -> None:
    """Database administration."""


@db.command("upgrade")
@settings_options(DB, _CHECKS)
def db_upgrade(database_url: str) -> None:
    """Apply the schema migrations (safe to run from several processes)."""
    from lrod.store.migrate import upgrade

    with _configuration_errors():
        before, after = upgrade(database_url)
    if before == after:
        click.echo(f"database is up to date (revision {after})")
    else:
        click.echo(f"database upgraded from revision {before or 'none'} to {after}")


@main.command()
@settings_options(DB, _CHECKS)
@click.argument("name")
def attempts(database_url: str, name: str) -> None:
    """Show the attempt history of an operation, internal errors included
    (operators only: reads the database directly)."""
    from lrod.operator import show_attempts

    with _configuration_errors():
        code = show_attempts(database_url, name)
    click.get_current_context().exit(code)


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
    from lrod.operator import show_deliveries

    with _configuration_errors():
        code = show_deliveries(database_url, state, limit)
    click.get_current_context().exit(code)


for _command in COMMANDS:
    main.add_command(_command)
