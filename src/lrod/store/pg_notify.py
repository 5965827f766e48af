"""Cross-process wake-ups on PostgreSQL with LISTEN/NOTIFY.

Each write transaction that changed something sends at most one NOTIFY (sent
at commit, so listeners never see uncommitted changes): from the store's
transaction (`send`), or from inside the write itself where that is one
statement in autocommit (`notify_cte`). Every process listens
on one dedicated connection and feeds what it hears into its hub, so waiters,
watchers and workers wake whichever process made the change. While the
connection is lost, the listener wakes everyone at each poll interval (they
re-read), and reconnects by itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection

from lrod.domain.states import State
from lrod.store.dialect import libpq_dsn
from lrod.store.driver import asyncpg_fetch
from lrod.store.protocol import ChangeListener

log = logging.getLogger("lrod.store.notify")

CHANNEL = "lrod_changes"
# NOTIFY payloads must stay under 8000 bytes; past this, say "everything".
MAX_PAYLOAD = 7000


def encode(
    origin: str,
    operations: Iterable[str],
    cancels: Iterable[str],
    work: bool,
    due: datetime | None,
) -> str:
    body: dict[str, Any] = {"o": origin, "ops": sorted(operations), "c": sorted(cancels)}
    if work:
        body["w"] = due.isoformat() if due else True
    payload = json.dumps(body, separators=(",", ":"))
    if len(payload) > MAX_PAYLOAD:
        payload = json.dumps({"o": origin, "all": True, "c": body["c"][:100], "w": True})
    return payload


NOTIFY = "SELECT pg_notify($1, $2)"

# `encode`'s "w" as Python's isoformat() writes a UTC moment (with its
# microseconds always), for datetime.fromisoformat in `dispatch`.
_ISO_UTC = """'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'"""


def notify_cte(rows: str, origin: str, *, queued_again: bool) -> str:
    """A CTE `note` that sends `encode`'s payload for the rows of the CTE
    `rows` (their `id`; with `queued_again`, those whose `state` is QUEUED
    are work due at their `run_after`), for a write that is ONE statement
    (worker_sql.one_statement): no rows, no NOTIFY. `origin` is the SQL of
    the origin's parameter. Delivered at the statement's commit, like a
    NOTIFY sent in a transaction; the same JSON as `encode` (key order and
    spacing aside), and "everything" past MAX_PAYLOAD."""
    work = ""
    if queued_again:
        due = f"min(run_after) FILTER (WHERE state = '{State.QUEUED.value}')"
        work = f", 'w', to_char({due} AT TIME ZONE 'UTC', {_ISO_UTC})"
    everything = f"json_build_object('o', {origin}::text, 'all', true, 'c', '[]'::json, 'w', true)"
    return f"""note AS (
  SELECT pg_notify('{CHANNEL}',
                   CASE WHEN length(body) > {MAX_PAYLOAD} THEN {everything}::text ELSE body END)
    FROM (SELECT json_strip_nulls(json_build_object(
                   'o', {origin}::text, 'ops', json_agg(id ORDER BY id), 'c', '[]'::json{work}
                 ))::text AS body
            FROM {rows} HAVING count(*) > 0) AS payload)"""


async def send(conn: AsyncConnection, payload: str) -> None:
    """NOTIFY in the caller's write transaction (delivered at its commit),
    one constant statement at driver level (prepared once per connection)."""
    await asyncpg_fetch(conn, NOTIFY, (CHANNEL, payload))


def dispatch(payload: str, origin: str, hub: ChangeListener) -> None:
    """Feed one notification into the hub; our own are skipped (the store
    already told the hub in-process). A payload not in `encode`'s shape
    (not JSON, ids not strings, a work time that is not one) is a one-line
    warning and tells the hub nothing."""
    try:
        body = json.loads(payload)
        if not isinstance(body, dict):
            raise ValueError("not an object")
        if body.get("o") == origin:
            return
        ops = _ids(body.get("ops", []))
        cancels = _ids(body.get("c", []))
        work = body.get("w")
        due = datetime.fromisoformat(work) if isinstance(work, str) else None
    except ValueError:
        log.warning("ignored a malformed notification")
        return
    if body.get("all"):
        hub.everything_changed()
    else:
        hub.operations_changed(ops)
    if cancels:
        hub.cancel_requested(cancels)
    if work:
        hub.work_available(due)


def _ids(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(i, str) for i in value):
        raise ValueError("not a list of ids")
    return value


class NotificationListener:
    """LISTEN on one asyncpg connection of its own: each notification is a
    callback from asyncpg's protocol on the event loop, with no task, reader
    registration or future per notification (psycopg's `notifies()` took
    about 1.5x the CPU per notification: bench/findings.md, day 9). A lost
    connection (its termination callback, or a failed connect) wakes
    everyone at once and again at each `fallback_interval` until listening
    again."""

    def __init__(
        self, url: URL, hub: ChangeListener, origin: str, fallback_interval: float = 1.0
    ) -> None:
        self._dsn = libpq_dsn(url)
        self._hub = hub
        self._origin = origin
        self._fallback_interval = fallback_interval
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="lrod-pg-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                await self._listen()
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as error:
                log.warning("notification listener lost its connection: %s", error)
            self.connected.clear()
            # Until we hear notifications again, wake everyone to re-read.
            self._wake_everyone()
            await asyncio.sleep(self._fallback_interval)

    async def _listen(self) -> None:
        """Until the connection is lost (returns) or this task is cancelled."""
        conn = await asyncpg.connect(self._dsn, timeout=5)
        lost = asyncio.get_running_loop().create_future()

        def ended(_conn: object) -> None:
            if not lost.done():
                lost.set_result(None)

        conn.add_termination_listener(ended)
        try:
            await conn.add_listener(CHANNEL, self._heard)
            self.connected.set()
            log.info("listening for changes from other processes")
            self._wake_everyone()  # anything missed while disconnected
            await lost
            log.warning("notification listener lost its connection")
        finally:
            conn.terminate()

    def _heard(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        dispatch(payload, self._origin, self._hub)

    def _wake_everyone(self) -> None:
        self._hub.everything_changed()
