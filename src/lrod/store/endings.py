"""The seam where every job ends.

Every terminal move and every retry decision of the store's write path
passes through `record_transitions`, inside the write transaction that makes
it: the worker's finishing write (finishes.py), CancelOperation of a queued
operation, and the rescue of a job whose lease expired (sql_store.py). What
must be durable with the move (the webhook outbox) is written there, in the
same transaction; what only observes it (metrics, logs) subscribes and is
told after the commit, never for a write that rolled back.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from lrod.domain.webhooks import DeliveryState, webhook_id
from lrod.store.changes import Changes
from lrod.store.protocol import EndedBy, Transition
from lrod.store.statements import DELIVERIES

log = logging.getLogger("lrod.store")


async def record_transitions(
    conn: AsyncConnection, changes: Changes, transitions: Sequence[Transition]
) -> None:
    """Call inside the write transaction, after the UPDATE ... RETURNING that
    made the moves (only for rows the UPDATE actually moved). A terminal
    move of an operation with a webhook target writes its outbox row here,
    so that the delivery commits (or rolls back) with the terminal state."""
    changes.transitions.extend(transitions)
    outbox = _outbox(transitions)
    if outbox:
        await conn.execute(insert(DELIVERIES), outbox)
        changes.deliveries = True


def record_transitions_committed(changes: Changes, transitions: Sequence[Transition]) -> None:
    """For a transaction that ran whole at driver level (finishes.finished_alone):
    its moves, which its caller made sure need no outbox row (it chooses the
    store's transaction for any batch that might: finishes.writes_outbox).
    The write has committed: a miss is logged, not raised."""
    missed = _outbox(transitions)
    if missed:
        log.error(
            "BUG: %d ended operation(s) with a webhook target written without an outbox row",
            len(missed),
        )
    changes.transitions.extend(transitions)


def _outbox(transitions: Sequence[Transition]) -> list[dict[str, object]]:
    return [
        {
            "operation_id": op.id,
            "webhook_id": webhook_id(op.id),
            "url": op.notify_url,
            "state": DeliveryState.PENDING.value,
            "attempts": 0,
            "next_attempt_time": op.end_time,
            "create_time": op.end_time,
        }
        for op in (t.operation for t in transitions)
        if op.done and op.notify_url is not None
    ]


class TransitionLog:
    """The log lines of the seam: one per operation that ended, one per
    rescue. (An attempt's own lines, with its internal error, are the
    worker's.)"""

    def transitions_committed(self, transitions: Sequence[Transition]) -> None:
        info = log.isEnabledFor(logging.INFO)
        for t in transitions:
            op = t.operation
            if t.by is not EndedBy.RESCUE and not (info and op.done):
                continue  # nothing to log: no fields built (one per job ended)
            fields = {
                "operation": op.name,
                "job_type": op.job_type,
                "attempt": op.attempt,
                "state": op.state.value,
                "ended_by": t.by.value,
                "worker": t.worker,
            }
            if t.by is EndedBy.RESCUE:
                retry_at = None if op.done else op.run_after.isoformat()
                log.warning(
                    "rescued a job whose lease expired",
                    extra=fields | {"retry_at": retry_at},
                )
            elif op.done:
                log.info("operation ended", extra=fields)
