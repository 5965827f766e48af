"""`python -m tests.store.acknowledging_writer URL`: writes to the store
without end and prints each write the store acknowledged (the call
returned), for test_one_trip_writes to kill with SIGKILL mid-stream:
`created ID` once a create returned, `done ID` once a job's success did.
Creates and finishes run 16 at a time, as a server's group commits do."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime, timedelta

from lrod.domain.names import new_operation_id
from lrod.domain.operation import Payload
from lrod.domain.submission import NewJob
from lrod.store.engine import open_database
from lrod.store.sql_store import SqlStore

LEASE = timedelta(minutes=5)


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def _create(store: SqlStore) -> None:
    while True:
        now = datetime.now(UTC)
        job = NewJob(
            id=new_operation_id(),
            owner="o",
            job_type="t",
            input=Payload("x", b"in"),
            max_attempts=1,
            create_time=now,
            run_after=now,
        )
        op, _ = await store.create(job, job.fingerprint())
        _say(f"created {op.id}")


async def _finish(store: SqlStore) -> None:
    while True:
        now = datetime.now(UTC)
        claims = await store.claim("w", now, LEASE, 16, ["t"])
        written = await asyncio.gather(
            *(store.succeed(c, now, Payload("y", b"out"), timedelta(days=1)) for c in claims)
        )
        for op in written:
            if op is not None:
                _say(f"done {op.id}")
        if not claims:
            await asyncio.sleep(0.001)


async def main(url: str) -> None:
    store = SqlStore(open_database(url))
    _say("ready")
    await asyncio.gather(*(_create(store) for _ in range(16)), _finish(store))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
