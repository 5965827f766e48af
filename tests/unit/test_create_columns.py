"""PostgreSQL's INSERT arrays (create_sql._Postgres._columns) convert each
distinct time of a batch once and write empty labels as "{}": the values
must be those the column types' own bind processors give, row by row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect

from lrod.domain.operation import Payload
from lrod.domain.submission import NewJob
from lrod.store.create_sql import _Postgres
from lrod.store.statements import T

NOW = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)


def _bound(column, value):  # type: ignore[no-untyped-def]
    dialect = asyncpg_dialect()
    process = column.type.dialect_impl(dialect).bind_processor(dialect)
    return value if process is None or value is None else process(value)


def test_times_and_labels_are_what_the_processors_give() -> None:
    east = timezone(timedelta(hours=2))
    jobs = [
        NewJob(
            id=f"{n:022d}",
            owner="o",
            job_type="t",
            input=Payload("type.googleapis.com/x", b""),
            max_attempts=1,
            create_time=created,
            run_after=run_after,
            labels=labels,
        )
        for n, (created, run_after, labels) in enumerate(
            [
                (NOW, NOW, {}),
                (NOW, NOW + timedelta(hours=1), {"team": "data", "tier": "gold"}),
                (NOW.astimezone(east), NOW.astimezone(east), {}),  # the same instants
                (NOW + timedelta(microseconds=1), NOW, {"a": ""}),
                (NOW, NOW, {}),
            ]
        )
    ]
    columns, _ = _Postgres(asyncpg_dialect())._columns([(job, "") for job in jobs])
    assert columns[6] == [_bound(T.labels, dict(job.labels)) for job in jobs]
    assert columns[12] == [_bound(T.create_time, job.create_time) for job in jobs]
    assert columns[13] == [_bound(T.run_after, job.run_after) for job in jobs]
    assert all(moment.tzinfo is not None for moment in columns[12] + columns[13])
