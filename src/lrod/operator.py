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


async def print_deliveries(database_url: str, state: str | None, limit: int) -> None:
    """The webhook outbox, newest first."""
    from lrod.domain.webhooks import DeliveryState

    store = SqlStore(open_database(database_url))
    try:
        found = await store.deliveries(DeliveryState(state.upper()) if state else None, limit)
    finally:
        await store.close()
    if not found:
        click.echo("no webhook deliveries")
        return
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
