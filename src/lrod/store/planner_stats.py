"""PostgreSQL's planner statistics for the operations table, kept current by
the process that changes it (the one policy for when lrod runs ANALYZE).

A queue's table swings: empty, then 100,000 queued rows from a few
BatchSubmits, then none queued again. The planner chooses the claim's and
the finishing writes' plans from the table's statistics, and a cached
(generic) plan keeps the choice made at the size it saw. On statistics taken
while the table was small or had no queued rows, it plans the claim as a
scan of every queued row followed by a sort, and the finish as a walk of the
lease index: each statement then costs tens of milliseconds instead of
well under one (bench/findings.md, "Day 7": 100,000 jobs through BatchSubmit
ran at 460-640 jobs/s, 2,800 with statistics refreshed every second).

autovacuum would refresh them, but only at its next look (a minute apart by
default) and after 10% of the table changed. This store counts the rows its
own commits changed and, once that reaches autovacuum's own threshold
(`ANALYZE_BASE` rows plus `ANALYZE_SCALE` of the table's rows at the last
refresh; at most `ANALYZE_MOST`, so that a burst of queued jobs into a large
table is seen before autovacuum's 10% of it have changed), runs `ANALYZE
operations` in the background: at most one at a time and at most one per
`ANALYZE_GAP` seconds, never in a request's path. Many processes share one
table: a refresh first takes a transaction-level advisory lock
(`pg_try_advisory_xact_lock`), and one that finds another process's refresh
under way leaves it to that one (two ANALYZEs of one table at once fail with
"tuple concurrently updated").
ANALYZE reads a fixed-size sample (about 30,000 rows at the default
statistics target) whatever the table's size, takes no lock that blocks
reads or writes, and invalidates every session's cached plans of the table,
so the next claim is planned on the new figures. A failed refresh is logged
and tried again at the next threshold; nothing waits on it.

SQLite has no such statistics unless ANALYZE was run, and plans from the
indexes alone: the store does not start this there (dialect.py)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger("lrod.store")

# autovacuum's analyze threshold in the same shape (autovacuum_analyze_threshold
# and _scale_factor are 50 and 0.1): rows changed since the last refresh.
ANALYZE_BASE = 1000
ANALYZE_SCALE = 0.1
ANALYZE_MOST = 100_000
# The shortest time between the end of one refresh and the start of the next.
ANALYZE_GAP = 1.0

_ANALYZE = text("ANALYZE operations")
# The advisory lock a refresh holds for its transaction, whichever process runs it.
ANALYZE_LOCK = 0x6C726F64_616E6C7A  # "lrodanlz"
_TAKE_LOCK = text(f"SELECT pg_try_advisory_xact_lock({ANALYZE_LOCK})")
_ROWS = text("SELECT reltuples FROM pg_class WHERE oid = 'operations'::regclass")


class PlannerStatistics:
    """Counts the rows this process's commits changed; refreshes the table's
    statistics when they reach the threshold."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._changed = 0
        self._rows = 0.0  # the table's rows at the last refresh (reltuples)
        self._task: asyncio.Task[None] | None = None
        self._next = 0.0  # loop time before which no refresh starts
        self.refreshes = 0
        self.left_to_others = 0

    def threshold(self) -> float:
        return min(ANALYZE_BASE + ANALYZE_SCALE * self._rows, ANALYZE_MOST)

    def changed(self, rows: int) -> None:
        """`rows` rows were changed by a commit just made."""
        self._changed += rows
        if self._changed < self.threshold() or self._task is not None:
            return
        loop = asyncio.get_running_loop()
        if loop.time() < self._next:
            return
        self._changed = 0
        self._task = loop.create_task(self._refresh(), name="lrod-analyze")

    async def _refresh(self) -> None:
        try:
            async with self._engine.connect() as conn:
                if not (await conn.execute(_TAKE_LOCK)).scalar():
                    # Another process is refreshing them now.
                    await conn.rollback()
                    self.left_to_others += 1
                    return
                await conn.execute(_ANALYZE)
                rows: Any = (await conn.execute(_ROWS)).scalar()
                await conn.commit()  # the lock is released with the transaction
            self._rows = max(0.0, float(rows or 0))
            self.refreshes += 1
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a refresh is an optimisation: never fatal
            log.warning("refreshing the planner's statistics failed: %s", type(error).__name__)
        finally:
            self._task = None
            self._next = asyncio.get_running_loop().time() + ANALYZE_GAP

    async def close(self) -> None:
        """Cancel a refresh under way (ANALYZE rolls back; nothing is lost)."""
        task = self._task
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
