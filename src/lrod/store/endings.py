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

from sqlalchemy.ext.asyncio import AsyncConnection

from lrod.store.changes import Changes
from lrod.store.protocol import EndedBy, Transition

log = logging.getLogger("lrod.store")


async def record_transitions(
    conn: AsyncConnection, changes: Changes, transitions: Sequence[Transition]
) -> None:
    """Call inside the write transaction, after the UPDATE ... RETURNING that
    made the moves (only for rows the UPDATE actually moved)."""
    changes.transitions.extend(transitions)


class TransitionLog:
    """The log lines of the seam: one per operation that ended, one per
    rescue. (An attempt's own lines, with its internal error, are the
    worker's.)"""

    def transitions_committed(self, transitions: Sequence[Transition]) -> None:
        for t in transitions:
            op = t.operation
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
