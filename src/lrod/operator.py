"""Operator views that read the database directly (never exposed over RPC)."""

from __future__ import annotations

import click

from lrod.domain.names import parse_operation_name
from lrod.store.engine import open_database
from lrod.store.sql_store import SqlStore


async def print_attempts(database_url: str, name: str) -> None:
    op_id = parse_operation_name(name if name.startswith("operations/") else f"operations/{name}")
    store = SqlStore(open_database(database_url))
    try:
        records = await store.attempts(op_id)
    finally:
        await store.close()
    if not records:
        click.echo(f"no attempts recorded for operations/{op_id}")
        return
    for r in records:
        ended = r.end_time.isoformat() if r.end_time else "-"
        click.echo(
            f"#{r.number} {r.outcome:<13} worker={r.worker_id} "
            f"start={r.start_time.isoformat()} end={ended}"
        )
        if r.error is not None:
            click.echo(f"   public: {r.error.code.name} {r.error.reason}: {r.error.message}")
        if r.internal_error:
            for line in r.internal_error.rstrip().splitlines():
                click.echo(f"   | {line}")
