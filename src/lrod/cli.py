"""The `lrod` command line. Every option has an LROD_* environment variable.

Server commands (serve, worker, db, attempts) are here; the client commands
(job-types, submit, get, list, cancel, delete, wait, watch) live in
lrod.client. The server's modules are imported only when a server command
runs, so that client commands start quickly.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import click

from lrod import logs
from lrod.client.commands import COMMANDS
from lrod.client.connection import DEFAULT_ADDRESS

if TYPE_CHECKING:
    from lrod.jobs.registry import Registry
    from lrod.worker import WorkerSettings

DEFAULT_JOBS = "lrod.jobs.examples:registry"
# The same as lrod.store.engine's, kept here so that --help needs no SQLAlchemy.
DEFAULT_DATABASE_URL = "sqlite:///lrod.db"

database_option = click.option(
    "--database-url",
    envvar="LROD_DATABASE_URL",
    default=DEFAULT_DATABASE_URL,
    show_default=True,
    help="sqlite:///PATH or postgresql://USER@HOST/DB.",
)


def _check_address(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    from lrod.metrics import parse_address

    if value:
        try:
            parse_address(value)
        except ValueError as error:
            raise click.BadParameter(str(error)) from None
    return value or None


metrics_option = click.option(
    "--metrics-address",
    envvar="LROD_METRICS_ADDRESS",
    default=None,
    callback=_check_address,
    help="host:port to serve Prometheus metrics on, e.g. 127.0.0.1:9464 (default: off).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--log-level", envvar="LROD_LOG_LEVEL", default="INFO", show_default=True)
@click.option(
    "--log-json/--no-log-json",
    envvar="LROD_LOG_JSON",
    default=False,
    help="One JSON object per log line.",
)
def main(log_level: str, log_json: bool) -> None:
    """lrod: long-running operations over gRPC."""
    logs.configure(log_level, log_json)


def _worker_options(func: Any) -> Any:
    for option in reversed(
        [
            click.option(
                "--jobs",
                envvar="LROD_JOBS",
                default=DEFAULT_JOBS,
                show_default=True,
                help="The job registry to load, as module:attribute.",
            ),
            click.option(
                "--concurrency",
                envvar="LROD_CONCURRENCY",
                default=4,
                show_default=True,
                type=click.IntRange(min=0),
                help="Jobs run at once (0: no workers).",
            ),
            click.option(
                "--lease-seconds",
                envvar="LROD_LEASE_SECONDS",
                default=30.0,
                show_default=True,
                type=click.FloatRange(min=0.5),
            ),
            click.option(
                "--drain-seconds",
                envvar="LROD_DRAIN_SECONDS",
                default=10.0,
                show_default=True,
                type=click.FloatRange(min=0),
                help="On SIGTERM, how long running jobs get to finish.",
            ),
            click.option(
                "--poll-seconds",
                envvar="LROD_POLL_SECONDS",
                default=1.0,
                show_default=True,
                type=click.FloatRange(min=0.01),
                help="How often idle workers look for due jobs without a wake-up.",
            ),
        ]
    ):
        func = option(func)
    return func


def _registry(spec: str) -> Registry:
    from lrod.jobs.registry import load_registry

    try:
        return load_registry(spec)
    except (ImportError, AttributeError, TypeError) as error:
        raise click.BadParameter(f"cannot load {spec!r}: {error}", param_hint="--jobs") from None


def _workers(
    concurrency: int, lease_seconds: float, drain_seconds: float, poll_seconds: float
) -> WorkerSettings:
    from lrod.worker import WorkerSettings

    return WorkerSettings(
        concurrency=concurrency,
        lease=timedelta(seconds=lease_seconds),
        drain_grace=drain_seconds,
        poll_interval=poll_seconds,
    )


@main.command()
@click.option(
    "--address",
    envvar="LROD_ADDRESS",
    default=DEFAULT_ADDRESS,
    show_default=True,
    help="host:port to listen on.",
)
@database_option
@_worker_options
@click.option(
    "--max-wait-seconds",
    envvar="LROD_MAX_WAIT_SECONDS",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="The longest WaitOperation holds a call.",
)
@metrics_option
@click.option(
    "--health-interval",
    envvar="LROD_HEALTH_INTERVAL",
    default=2.0,
    show_default=True,
    type=click.FloatRange(min=0.05),
    help="Seconds between the database checks behind grpc.health.v1.",
)
@click.option(
    "--http-address",
    envvar="LROD_HTTP_ADDRESS",
    default=None,
    help="host:port for the HTTP/JSON front door (202 + Location); off unless given.",
)
def serve(
    address: str,
    database_url: str,
    jobs: str,
    concurrency: int,
    lease_seconds: float,
    drain_seconds: float,
    poll_seconds: float,
    max_wait_seconds: float,
    metrics_address: str | None,
    health_interval: float,
    http_address: str | None,
) -> None:
    """Serve the API, with embedded workers unless --concurrency 0."""
    from lrod.app import Settings, run
    from lrod.manager import ManagerSettings

    settings = Settings(
        address=address,
        database_url=database_url,
        workers=_workers(concurrency, lease_seconds, drain_seconds, poll_seconds),
        manager=ManagerSettings(max_wait=max_wait_seconds),
        metrics_address=metrics_address,
        health_interval=health_interval,
        http_address=http_address,
    )
    asyncio.run(run(settings, _registry(jobs)))


@main.command()
@database_option
@_worker_options
@metrics_option
def worker(
    database_url: str,
    jobs: str,
    concurrency: int,
    lease_seconds: float,
    drain_seconds: float,
    poll_seconds: float,
    metrics_address: str | None,
) -> None:
    """Run workers only (no API)."""
    if concurrency < 1:
        raise click.BadParameter("a worker process needs at least 1", param_hint="--concurrency")
    from lrod.app import Settings, run

    settings = Settings(
        database_url=database_url,
        serve_api=False,
        workers=_workers(concurrency, lease_seconds, drain_seconds, poll_seconds),
        metrics_address=metrics_address,
    )
    asyncio.run(run(settings, _registry(jobs)))


@main.group()
def db() -> None:
    """Database administration."""


@db.command("upgrade")
@database_option
def db_upgrade(database_url: str) -> None:
    """Apply the schema migrations (safe to run from several processes)."""
    from lrod.store.migrate import upgrade

    upgrade(database_url)
    click.echo("database is up to date")


@main.command()
@database_option
@click.argument("name")
def attempts(database_url: str, name: str) -> None:
    """Show the attempt history of an operation, internal errors included
    (operators only: reads the database directly)."""
    from lrod.operator import print_attempts

    asyncio.run(print_attempts(database_url, name))


for _command in COMMANDS:
    main.add_command(_command)
