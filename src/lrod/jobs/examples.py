"""The built-in example jobs (`lrod serve` loads them by default).

Their names and messages are part of the contract: tests and clients in other
languages rely on them.
"""

from __future__ import annotations

import asyncio
import csv
import os
import re
from datetime import timedelta
from pathlib import Path

from lrod.domain.errors import Code
from lrod.domain.retry import Backoff
from lrod.examples.v1 import examples_pb2 as pb
from lrod.jobs.context import JobCancelled, JobContext
from lrod.jobs.errors import PermanentJobError, RetryableJobError
from lrod.jobs.registry import Registry

registry = Registry()

EXPORT_DIR_ENV = "LROD_EXPORT_DIR"
_SAFE_RANGE = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_EXPORT_ROWS = 10_000_000
# Bounds of the examples' inputs, checked at Submit (README: Limits): a job
# that held a worker slot for ever would starve the others.
MAX_SLEEP_STEPS = 10_000
MAX_SLEEP = timedelta(hours=24)
MAX_FAIL_TIMES = 100


def _sleep_problems(job: pb.SleepJob) -> list[tuple[str, str]]:
    problems = []
    if not 0 <= job.steps <= MAX_SLEEP_STEPS:
        problems.append(("steps", f"must be from 0 to {MAX_SLEEP_STEPS}"))
    seconds, nanos = job.duration.seconds, job.duration.nanos
    if seconds < 0 or nanos < 0 or (seconds, nanos) > (int(MAX_SLEEP.total_seconds()), 0):
        problems.append(("duration", "must be from 0s to 24h"))
    return problems


def _flaky_problems(job: pb.FlakyJob) -> list[tuple[str, str]]:
    if 0 <= job.fail_times <= MAX_FAIL_TIMES:
        return []
    return [("fail_times", f"must be from 0 to {MAX_FAIL_TIMES}")]


def _export_problems(job: pb.ExportReportJob) -> list[tuple[str, str]]:
    problems = []
    if not _SAFE_RANGE.fullmatch(job.range):
        problems.append(("range", "must be 1-64 characters of letters, digits, '-' and '_'"))
    if not 0 <= job.rows <= MAX_EXPORT_ROWS:
        problems.append(("rows", f"must be from 0 to {MAX_EXPORT_ROWS}"))
    return problems


@registry.job(
    "examples.sleep",
    input=pb.SleepJob,
    output=pb.SleepResult,
    max_attempts=3,
    max_timeout=timedelta(hours=24),
    # A sleep that overran its limit would overrun it again.
    retry_timeouts=False,
    validate=_sleep_problems,
)
async def sleep(ctx: JobContext, job: pb.SleepJob) -> pb.SleepResult:
    """Sleeps for the given duration in steps, reporting progress after each."""
    steps = max(job.steps, 1)
    total = job.duration.ToTimedelta().total_seconds()
    ctx.report_progress(0, steps, "sleeping")
    for step in range(1, steps + 1):
        # Sleep, but stop at once when the operation is cancelled.
        try:
            async with asyncio.timeout(total / steps):
                await ctx.cancelled()
        except TimeoutError:
            ctx.report_progress(step, steps)
        else:
            raise JobCancelled()
    return pb.SleepResult(steps_done=steps)


@registry.job(
    "examples.flaky",
    input=pb.FlakyJob,
    output=pb.FlakyResult,
    max_attempts=5,
    backoff=Backoff(minimum=timedelta(milliseconds=50), maximum=timedelta(seconds=1)),
    validate=_flaky_problems,
)
async def flaky(ctx: JobContext, job: pb.FlakyJob) -> pb.FlakyResult:
    """Fails temporarily fail_times times, then succeeds; or fails for good."""
    if job.permanent:
        raise PermanentJobError(
            "The flaky job was asked to fail permanently.",
            code=Code.FAILED_PRECONDITION,
            reason="PERMANENT_FAILURE_REQUESTED",
        )
    if ctx.info.attempt <= job.fail_times:
        raise RetryableJobError(
            f"Temporary failure {ctx.info.attempt} of {job.fail_times}.",
            reason="TEMPORARY_FAILURE_REQUESTED",
        )
    return pb.FlakyResult(attempts=ctx.info.attempt)


@registry.job(
    "examples.export_report",
    input=pb.ExportReportJob,
    output=pb.ExportReportResult,
    max_attempts=3,
    validate=_export_problems,
)
def export_report(ctx: JobContext, job: pb.ExportReportJob) -> pb.ExportReportResult:
    """Writes a CSV report of the given rows for the given range (a sync handler)."""
    # Submit refused bad inputs already (validate=); jobs stored before that
    # check existed are refused here.
    if not _SAFE_RANGE.fullmatch(job.range):
        raise PermanentJobError(
            "range must be 1-64 characters of letters, digits, '-' and '_'.",
            code=Code.INVALID_ARGUMENT,
            reason="INVALID_RANGE",
        )
    if not 0 <= job.rows <= MAX_EXPORT_ROWS:
        raise PermanentJobError(
            f"rows must be from 0 to {MAX_EXPORT_ROWS}.",
            code=Code.INVALID_ARGUMENT,
            reason="INVALID_ROWS",
        )
    folder = Path(os.environ.get(EXPORT_DIR_ENV, "exports")).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    name = ctx.info.operation_name.rsplit("/", 1)[-1]
    path = folder / f"report-{job.range}-{name}.csv"
    partial = path.with_suffix(".csv.partial")
    ctx.report_progress(0, job.rows, "writing")
    with partial.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["row", "range", "amount"])
        for row in range(1, job.rows + 1):
            writer.writerow([row, job.range, (row * 7919) % 10_000 / 100])
            if row % 1000 == 0 or row == job.rows:
                ctx.raise_if_cancelled()
                ctx.report_progress(row, stage="writing")
    partial.replace(path)
    ctx.report_progress(job.rows, stage="done")
    return pb.ExportReportResult(
        uri=path.as_uri(), row_count=job.rows, size_bytes=path.stat().st_size
    )
