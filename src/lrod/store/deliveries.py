"""The webhook outbox's SQL: dispatchers claim due deliveries (SKIP LOCKED
on PostgreSQL, the single writer on SQLite) under a lease, so each delivery
is sent by one dispatcher at a time across all processes; every write after
the POST is fenced by the claim's token."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from lrod.domain.webhooks import Delivery, DeliveryState
from lrod.store.protocol import DeliveryClaim
from lrod.store.rows import to_delivery, to_operation
from lrod.store.statements import DELIVERIES, OPS, T

D = DELIVERIES.c


def _free(now: datetime) -> Any:
    return or_(D.lease_expires_at.is_(None), D.lease_expires_at < now)


async def claim_due(
    conn: AsyncConnection, now: datetime, limit: int, lease: timedelta, token: str
) -> list[DeliveryClaim]:
    due = (
        select(D.operation_id)
        .where(D.state == DeliveryState.PENDING.value, D.next_attempt_time <= now, _free(now))
        .order_by(D.next_attempt_time)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = [r.operation_id for r in await conn.execute(due)]
    if not ids:
        return []
    rows = (
        await conn.execute(
            update(DELIVERIES)
            .where(D.operation_id.in_(ids), D.state == DeliveryState.PENDING.value, _free(now))
            .values(lease_token=token, lease_expires_at=now + lease)
            .returning(*D)
        )
    ).all()
    ops = {
        r.id: to_operation(r)
        for r in await conn.execute(select(OPS).where(T.id.in_([r.operation_id for r in rows])))
    }
    claims = [
        DeliveryClaim(to_delivery(r), ops[r.operation_id], token)
        for r in rows
        if r.operation_id in ops
    ]
    claims.sort(key=lambda c: c.delivery.next_attempt_time or now)
    return claims


async def record_attempt(
    conn: AsyncConnection,
    claim: DeliveryClaim,
    now: datetime,
    *,
    counted: bool,
    state: DeliveryState,
    status: int | None,
    error: str | None,
    next_attempt_time: datetime | None,
) -> Delivery | None:
    """The end of one attempt (or, not `counted`, a hand-back before any
    POST); None if the claim's lease was lost meanwhile."""
    values: dict[str, Any] = {
        "state": state.value,
        "next_attempt_time": next_attempt_time,
        "lease_token": None,
        "lease_expires_at": None,
    }
    if counted:
        values |= {"attempts": D.attempts + 1, "last_status": status, "last_error": error}
    if state is not DeliveryState.PENDING:
        values["end_time"] = now
    row = (
        await conn.execute(
            update(DELIVERIES)
            .where(D.operation_id == claim.delivery.operation_id, D.lease_token == claim.token)
            .values(**values)
            .returning(*D)
        )
    ).first()
    return None if row is None else to_delivery(row)


def read_deliveries(conn: Connection, ids: Sequence[str]) -> dict[str, Delivery]:
    rows = conn.execute(select(DELIVERIES).where(D.operation_id.in_(list(ids)))).all()
    return {r.operation_id: to_delivery(r) for r in rows}


def list_deliveries(conn: Connection, state: DeliveryState | None, limit: int) -> list[Delivery]:
    stmt = select(DELIVERIES).order_by(D.create_time.desc(), D.operation_id).limit(limit)
    if state is not None:
        stmt = stmt.where(D.state == state.value)
    return [to_delivery(r) for r in conn.execute(stmt).all()]
