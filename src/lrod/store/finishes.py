"""The finishing writes of attempts inside one write transaction, as a few
statements for the whole batch, each row fenced by its claim's lease token."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from lrod.domain.operation import Operation, PublicError
from lrod.domain.states import State
from lrod.store.changes import Changes
from lrod.store.endings import record_transitions
from lrod.store.protocol import Claim, EndedBy, Transition
from lrod.store.rows import error_to_json, to_operation
from lrod.store.statements import ATTEMPTS, OPS, T

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


# The finishing write of a batch is a few statements whatever its size, each
# built once (its SQL compiled once): lock and read the rows (their fences),
# update the held ones (one executemany per shape of values, usually one),
# close their attempts (one executemany). The written rows are the locked
# rows with the written values: nobody else can change them meanwhile.
FENCES = select(OPS).where(T.id.in_(bindparam("ids", expanding=True))).with_for_update()
CLOSE_ATTEMPTS = (
    update(ATTEMPTS)
    .where(
        ATTEMPTS.c.operation_id == bindparam("a_id"),
        ATTEMPTS.c.lease_token == bindparam("a_token"),
    )
    .values(
        end_time=bindparam("a_end", type_=ATTEMPTS.c.end_time.type),
        outcome=bindparam("a_outcome"),
        error=bindparam("a_error", type_=ATTEMPTS.c.error.type),
        internal_error=bindparam("a_internal"),
    )
)
_UPDATES: dict[tuple[str, ...], Any] = {}


def _update_for(columns: tuple[str, ...]) -> Any:
    """UPDATE ... SET these columns WHERE the fence holds, one per shape."""
    statement = _UPDATES.get(columns)
    if statement is None:
        statement = (
            update(OPS)
            .where(
                T.id == bindparam("f_id"),
                T.lease_token == bindparam("f_token"),
                T.state == State.RUNNING.value,
            )
            .values(
                {T[c]: bindparam(f"v_{c}", type_=T[c].type) for c in columns}
                | {
                    T.lease_owner: None,
                    T.lease_token: None,
                    T.lease_expires_at: None,
                    T.update_time: bindparam("v_update_time", type_=T.update_time.type),
                    T.version: T.version + 1,
                }
            )
        )
        _UPDATES[columns] = statement
    return statement


def _values(item: Finish) -> dict[str, Any]:
    """The finish's column values as plain values (a release's `attempt - 1`
    is the claim's attempt less one: the fenced row still has it)."""
    values = dict(item.values)
    if "attempt" in values:
        values["attempt"] = item.claim.operation.attempt - 1
    return values


async def finish_many(
    conn: AsyncConnection, changes: Changes, items: Sequence[Finish]
) -> list[Operation | None]:
    """Each item's finishing write, fenced per row by its lease token: a row
    no longer RUNNING under that token is left alone and its item gets None.
    Every move goes through the seam (record_transitions)."""
    if not items:
        return []
    ids = sorted({item.claim.operation.id for item in items})
    fences = {r.id: r for r in await conn.execute(FENCES, {"ids": ids})}
    held: dict[str, Finish] = {}
    for item in items:
        claim = item.claim
        fence = fences.get(claim.operation.id)
        if (
            fence is None
            or fence.lease_token != claim.lease_token
            or fence.state != State.RUNNING.value
            or claim.operation.id in held
        ):
            log.warning(
                "refused a stale write: operations/%s attempt %d no longer holds its lease",
                claim.operation.id,
                claim.operation.attempt,
            )
            continue
        held[claim.operation.id] = item
    if not held:
        return [None] * len(items)
    shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    written: dict[str, Operation] = {}
    for op_id, item in held.items():
        values = _values(item)
        params = {f"v_{c}": v for c, v in values.items()}
        params |= {"f_id": op_id, "f_token": item.claim.lease_token, "v_update_time": item.now}
        shapes.setdefault(tuple(sorted(values)), []).append(params)
        row = fences[op_id]
        written[op_id] = to_operation(
            SimpleNamespace(
                **(
                    dict(row._mapping)
                    | values
                    | {
                        "lease_owner": None,
                        "lease_token": None,
                        "lease_expires_at": None,
                        "update_time": item.now,
                        "version": row.version + 1,
                    }
                )
            )
        )
    for columns, rows in shapes.items():
        await conn.execute(_update_for(columns), rows)
    await conn.execute(
        CLOSE_ATTEMPTS,
        [
            {
                "a_id": op_id,
                "a_token": item.claim.lease_token,
                "a_end": item.now,
                "a_outcome": item.outcome or item.target.value,
                "a_error": error_to_json(item.error),
                "a_internal": item.internal_error,
            }
            for op_id, item in held.items()
        ],
    )
    moves: list[Transition] = []
    results: list[Operation | None] = []
    for item in items:
        op_id = item.claim.operation.id
        op = written.get(op_id) if held.get(op_id) is item else None
        results.append(op)
        if op is None:
            continue
        changes.operations.add(op_id)
        if item.target is State.QUEUED:
            due = op.run_after if changes.work_due is None else min(changes.work_due, op.run_after)
            changes.work, changes.work_due = True, due
        moves.append(
            Transition(op, State.RUNNING, EndedBy.WORKER, item.claim.operation.lease_owner)
        )
    await record_transitions(conn, changes, moves)
    return results
