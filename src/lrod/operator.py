"""Operator views that read the database directly (never exposed over RPC)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import click

from lrod.client.exit_codes import Exit
from lrod.domain.errors import InvalidArgument, LrodError
from lrod.domain.names import parse_operation_name
from lrod.domain.webhooks import DeliveryState
from lrod.settings import ConfigurationError
from lrod.store.engine import open_database, sqlite_path
from lrod.store.protocol import AttemptRecord
from lrod.store.sql_store import SqlStore

_T = TypeVar("_T")

# How an attempt ended, as the attempts table records it, for people: an
# attempt whose job went back to the queue for a retry failed temporarily.
_OUTCOMES = {"QUEUED": "RETRIED", "RUNNING": "RUNNING"}


def show_attempts(database_url: str, name: str) -> int:
    """Print the attempts of operation `name`; the exit code."""
    try:
        op_id = parse_operation_name(
            name if name.startswith("operations/") else f"operations/{name}", field="NAME"
        )
    except InvalidArgument as error:
        raise ConfigurationError(
            f"{name!r} is not an operation name: give operations/ID or the ID"
        ) from error
    _check_database(database_url)
    return asyncio.run(_print_attempts(database_url, op_id))


async def _read(database_url: str, read: Callable[[SqlStore], Awaitable[_T]]) -> _T:
    """`read` on the database, closed after; a database that cannot be read
    is the operator's configuration to check."""
    store = SqlStore(open_database(database_url))
    try:
        return await read(store)
    except LrodError as error:
        raise ConfigurationError(
            f"cannot read the database {database_url}: {error.message}\n"
            "Check --database-url (LROD_DATABASE_URL), and that lrod's server uses it."
        ) from None
    finally:
        await store.close()


async def _print_attempts(database_url: str, op_id: str) -> int:
    async def read(store: SqlStore) -> tuple[bool, Sequence[AttemptRecord]]:
        exists = await store.operation_exists(op_id)
        return exists, (await store.attempts(op_id) if exists else [])

    exists, records = await _read(database_url, read)
    if not exists:
        click.echo(f"error: no operation operations/{op_id} in this database", err=True)
        return Exit.FAILED
    if not records:
        click.echo(f"operations/{op_id} has no attempts yet (it has not run)")
        return Exit.SUCCEEDED
    for r in records:
        ended = r.end_time.isoformat() if r.end_time else "-"
        outcome = _OUTCOMES.get(r.outcome, r.outcome)
        click.echo(
            f"#{r.number} {outcome:<13} worker={r.worker_id} "
            f"start={r.start_time.isoformat()} end={ended}"
        )
        if r.error is not None:
            click.echo(f"   public: {r.error.code.name} {r.error.reason}: {r.error.message}")
        if r.internal_error:
            for line in r.internal_error.rstrip().splitlines():
                click.echo(f"   | {line}")
    return Exit.SUCCEEDED


def show_deliveries(database_url: str, state: str | None, limit: int) -> int:
    """Print the webhook outbox, newest first; the exit code."""
    _check_database(database_url)
    return asyncio.run(_print_deliveries(database_url, state, limit))


def _check_database(database_url: str) -> None:
    path = sqlite_path(database_url)
    if path is not None and not os.path.exists(path):
        # Opening it would create an empty database where the command runs.
        raise ConfigurationError(
            f"no database at {path}: run this where the server keeps its database, "
            "or give --database-url (LROD_DATABASE_URL)"
        )


async def _print_deliveries(database_url: str, state: str | None, limit: int) -> int:
    wanted = DeliveryState(state.upper()) if state else None
    found = await _read(database_url, lambda store: store.deliveries(wanted, limit))
    if not found:
        click.echo("no webhook deliveries" + (f" in state {state}" if state else ""))
        return Exit.SUCCEEDED
    for d in found:
        status = d.last_status if d.last_status is not None else "-"
        if d.state is DeliveryState.PENDING and d.next_attempt_time is not None:
            timing = f"next={d.next_attempt_time.isoformat()}"
        else:
            timing = f"ended={d.end_time.isoformat() if d.end_time else '-'}"
        click.echo(
            f"operations/{d.operation_id} {d.state.value:<9} attempts={d.attempts} "
            f"status={status} error={d.last_error or '-'} {timing} {d.url}"
        )
    return Exit.SUCCEEDED
