"""The finishing writes of attempts inside one write transaction, as one
statement for the whole batch (worker_sql.py), each row fenced by its claim's
lease token: in the store's transaction (`finish_many`), or as part of a
transaction run whole where the driver runs one in a single trip
(`FinishPlan`, `finished_alone`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from lrod.domain.operation import Operation, PublicError
from lrod.domain.states import State
from lrod.store.changes import Changes
from lrod.store.endings import record_transitions, record_transitions_committed
from lrod.store.protocol import Claim, EndedBy, Transition
from lrod.store.rows import error_to_json, to_operation
from lrod.store.worker_sql import FinishWrite, WorkerSql

log = logging.getLogger("lrod.store")

# A claim: (operation id, lease token).
Key = tuple[str, str]


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


_GROUPS = {
    "state", "end_time", "expire_time", "error", "result_type", "result_value",
    "progress_completed", "progress_total", "progress_stage", "last_attempt_error",
    "run_after", "attempt",
}  # fmt: skip


def _write(item: Finish) -> FinishWrite:
    """The finish's column values as the constant statement's parameters (a
    column group it does not set keeps the row's value; a release's `attempt`
    is the claim's less one)."""
    v = item.values
    unknown = v.keys() - _GROUPS
    if unknown:
        raise ValueError(f"a finishing write cannot set {sorted(unknown)}")
    return FinishWrite(
        op_id=item.claim.operation.id,
        token=item.claim.lease_token,
        now=item.now,
        state=v["state"],
        ends="end_time" in v,
        end_time=v.get("end_time"),
        expire_time=v.get("expire_time"),
        error=v.get("error"),
        has_result="result_type" in v,
        result_type=v.get("result_type"),
        result_value=v.get("result_value"),
        has_progress="progress_completed" in v,
        progress=(
            v.get("progress_completed", 0),
            v.get("progress_total", 0),
            v.get("progress_stage", ""),
        ),
        has_last_error="last_attempt_error" in v,
        last_attempt_error=v.get("last_attempt_error"),
        has_run_after="run_after" in v,
        run_after=v.get("run_after"),
        releases="attempt" in v,
        outcome=item.outcome or item.target.value,
        attempt_error=error_to_json(item.error),
        internal_error=item.internal_error,
    )


def writes_outbox(items: Sequence[Finish]) -> bool:
    """Whether a batch may end an operation that has a webhook target (its
    outbox row is written in the same transaction, endings.py)."""
    return any(i.target.terminal and i.claim.operation.notify_url is not None for i in items)


class FinishPlan:
    """A batch's finishing writes as the statements take them: one write per
    claim (a repeat of the same claim is refused like any stale write);
    claims of one operation (at most one can hold) in separate rounds, each
    round's ids distinct."""

    def __init__(self, items: Sequence[Finish]) -> None:
        self.items = items
        self._rounds: list[dict[str, Finish]] = []
        self._chosen: dict[Key, Finish] = {}
        for item in items:
            key = (item.claim.operation.id, item.claim.lease_token)
            if key in self._chosen:
                continue
            self._chosen[key] = item
            free = next((r for r in self._rounds if key[0] not in r), None)
            if free is None:
                free = {}
                self._rounds.append(free)
            free[key[0]] = item

    def rounds(self) -> list[list[FinishWrite]]:
        return [[_write(item) for item in batch.values()] for batch in self._rounds]

    def settle(
        self, rows: Sequence[dict[str, Any]], changes: Changes
    ) -> tuple[list[Operation | None], list[Transition]]:
        """Each item's written operation (None: refused) from each round's
        written rows, and the moves made."""
        written: dict[Key, Operation] = {}
        for batch, round_rows in zip(self._rounds, rows, strict=True):
            for op_id, row in round_rows.items():
                written[(op_id, batch[op_id].claim.lease_token)] = to_operation(row)
        moves: list[Transition] = []
        results: list[Operation | None] = []
        for item in self.items:
            claim = item.claim
            key = (claim.operation.id, claim.lease_token)
            op = written.get(key) if self._chosen[key] is item else None
            results.append(op)
            if op is None:
                log.warning(
                    "refused a stale write: operations/%s attempt %d no longer holds its lease",
                    claim.operation.id,
                    claim.operation.attempt,
                )
                continue
            changes.operations.add(op.id)
            if item.target is State.QUEUED:
                changes.work_at(op.run_after)
            moves.append(Transition(op, State.RUNNING, EndedBy.WORKER, claim.operation.lease_owner))
        return results, moves


async def finish_many(
    conn: AsyncConnection, changes: Changes, items: Sequence[Finish], sql: WorkerSql
) -> list[Operation | None]:
    """Each item's finishing write, fenced per row by its lease token: a row
    no longer RUNNING under that token is left alone and its item gets None.
    The whole batch is one constant statement on PostgreSQL, one hop to the
    driver's thread on SQLite (worker_sql.py). Every move goes through the
    seam (record_transitions)."""
    if not items:
        return []
    plan = FinishPlan(items)
    rows = [await sql.finish(conn, writes) for writes in plan.rounds()]
    results, moves = plan.settle(rows, changes)
    await record_transitions(conn, changes, moves)
    return results


def finished_alone(
    plan: FinishPlan, rows: Sequence[dict[str, Any]], changes: Changes
) -> list[Operation | None]:
    """As `finish_many`, for a plan whose rounds ran as (part of) a
    transaction of their own at driver level (WorkerSqlAlone.write), which
    has committed. Only for a batch that writes no outbox row
    (`writes_outbox`): its moves then need no statement of the seam's."""
    results, moves = plan.settle(rows, changes)
    record_transitions_committed(changes, moves)
    return results
