"""An attempt's finishing write inside a write transaction, fenced by its
claim's lease token."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from lrod.domain.operation import Operation, PublicError
from lrod.domain.states import State
from lrod.store.changes import Changes
from lrod.store.endings import record_transitions
from lrod.store.protocol import Claim, EndedBy, Transition
from lrod.store.rows import error_to_json, to_operation
from lrod.store.statements import ATTEMPTS, OPS, T, held

log = logging.getLogger("lrod.store")


@dataclass(frozen=True)
class Finish:
    """One attempt's finishing write, waiting for its group's commit."""

    claim: Claim
    now: datetime
    target: State
    values: dict[str, Any]
    error: PublicError | None
    internal_error: str | None
    outcome: str | None


async def finish_one(conn: AsyncConnection, changes: Changes, item: Finish) -> Operation | None:
    claim = item.claim
    row = (
        await conn.execute(
            update(OPS)
            .where(*held(claim))
            .values(
                **item.values,
                lease_owner=None,
                lease_token=None,
                lease_expires_at=None,
                update_time=item.now,
                version=T.version + 1,
            )
            .returning(*T)
        )
    ).first()
    if row is None:
        log.warning(
            "refused a stale write: operations/%s attempt %d no longer holds its lease",
            claim.operation.id,
            claim.operation.attempt,
        )
        return None
    await conn.execute(
        update(ATTEMPTS)
        .where(
            ATTEMPTS.c.operation_id == claim.operation.id,
            ATTEMPTS.c.lease_token == claim.lease_token,
        )
        .values(
            end_time=item.now,
            outcome=item.outcome or item.target.value,
            error=error_to_json(item.error),
            internal_error=item.internal_error,
        )
    )
    changes.operations.add(claim.operation.id)
    if item.target is State.QUEUED:
        due = row.run_after if changes.work_due is None else min(changes.work_due, row.run_after)
        changes.work, changes.work_due = True, due
    written = to_operation(row)
    moved = Transition(written, State.RUNNING, EndedBy.WORKER, claim.operation.lease_owner)
    await record_transitions(conn, changes, [moved])
    return written
