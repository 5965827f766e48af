"""One bad member of a batched write never fails the others: on the real
SQLite and PostgreSQL, a create the database refuses is split out of its
group commit and fails alone, with INVALID_ARGUMENT (not UNAVAILABLE)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from lrod.domain.errors import InvalidArgument
from lrod.domain.names import new_operation_id
from lrod.domain.operation import Operation, Payload
from lrod.domain.submission import NewJob
from lrod.store.sql_store import SqlStore

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _job(**fields: object) -> NewJob:
    return NewJob(
        id=new_operation_id(),
        owner="o",
        job_type="t",
        input=Payload("x", b""),
        max_attempts=1,
        create_time=NOW,
        run_after=NOW,
        **fields,  # type: ignore[arg-type]
    )


def _spy_on_batches(store: SqlStore) -> list[list[str]]:
    """The ids of each flush of the creates' group commit."""
    seen: list[list[str]] = []
    flush = store._creates._flush

    async def recording(items: list[tuple[NewJob, str]]) -> object:
        seen.append([job.id for job, _ in items])
        return await flush(items)

    store._creates._flush = recording  # type: ignore[assignment]
    return seen


# Past validation (the store's own net): a priority wider than any integer
# column fails on both databases; a NUL in text fails on PostgreSQL.
BAD = [pytest.param({"priority": 2**70}, id="huge-priority")]


@pytest.mark.parametrize("bad_fields", BAD)
async def test_thirty_creates_racing_one_bad_one_all_succeed(
    store: SqlStore, bad_fields: dict[str, object]
) -> None:
    batches = _spy_on_batches(store)
    good = [_job(request_id=None) for _ in range(30)]
    bad = _job(**bad_fields)
    jobs = [*good[:15], bad, *good[15:]]
    outcomes = await asyncio.gather(
        *[store.create(job, "fp") for job in jobs], return_exceptions=True
    )
    refused = outcomes.pop(15)
    assert isinstance(refused, InvalidArgument)
    assert refused.reason == "UNSTORABLE_VALUE"
    assert all(isinstance(o, tuple) and isinstance(o[0], Operation) for o in outcomes), outcomes
    # The bad one really shared a flush with others before it was split out.
    assert any(bad.id in batch and len(batch) > 1 for batch in batches)
    for job in good:
        assert (await store.get(job.id, "o", NOW)).id == job.id


async def test_a_nul_the_database_refuses_fails_only_its_own_create(
    store: SqlStore, database_url: str
) -> None:
    bad = _job(dedupe_key="a\x00b")
    good = [_job() for _ in range(10)]
    outcomes = await asyncio.gather(
        *[store.create(job, "fp") for job in [*good, bad]], return_exceptions=True
    )
    assert all(isinstance(o, tuple) for o in outcomes[:-1])
    if database_url.startswith("postgresql"):
        # Validation refuses NUL on both databases; below it, PostgreSQL's
        # refusal is INVALID_ARGUMENT, never "database unavailable".
        assert isinstance(outcomes[-1], InvalidArgument)
        assert outcomes[-1].reason == "UNSTORABLE_VALUE"
    else:
        assert isinstance(outcomes[-1], tuple)
