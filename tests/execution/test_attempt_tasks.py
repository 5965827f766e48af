"""The attempt runs its handler in the pool's task for the job, with nothing
beside it until needed: the progress writer starts at the first report, a
cancel arrives by a callback, the time limit is a timer. Every behaviour
stays: progress written while running, a handler that swallows its stop
still fails at its time limit, and the pool goes on."""

from __future__ import annotations

import asyncio

from google.protobuf import empty_pb2, wrappers_pb2
from google.rpc import code_pb2

from tests.execution.support import wait_done, wait_until
from tests.helpers import metadata, state_name, submit


def _attempt_tasks(op_id: str) -> tuple[list[str], list[str]]:
    """The pool's task for the job, and the attempt's own helper tasks."""
    tasks = asyncio.all_tasks()
    job = [t.get_name() for t in tasks if t.get_name() == f"lrod-job-{op_id}"]
    helpers = [
        t.get_coro().__qualname__ for t in tasks if t.get_coro().__qualname__.startswith("Attempt.")
    ]
    return job, helpers


async def test_a_running_job_has_its_one_task_and_no_helper(jobs, operations, gates) -> None:
    op = await submit(jobs, "test.gate", wrappers_pb2.StringValue(value="one"))
    await asyncio.wait_for(gates.started_event("one").wait(), 10)
    job, helpers = _attempt_tasks(op.name.removeprefix("operations/"))
    assert (len(job), helpers) == (1, [])
    gates.gate("one").set()
    assert state_name(await wait_done(operations, op.name)) == "SUCCEEDED"


async def test_progress_is_written_while_running_once_the_handler_reports(
    jobs, operations, gates
) -> None:
    op = await submit(jobs, "test.halfway", wrappers_pb2.StringValue(value="half"))
    running = await wait_until(operations, op.name, lambda o: metadata(o).progress.completed == 1)
    assert state_name(running) == "RUNNING"
    assert metadata(running).progress.stage == "half"
    _, helpers = _attempt_tasks(op.name.removeprefix("operations/"))
    assert helpers == ["Attempt._keep_lease"]
    gates.gate("half").set()
    done = await wait_done(operations, op.name)
    assert state_name(done) == "SUCCEEDED"
    assert (metadata(done).progress.completed, metadata(done).progress.total) == (1, 2)


async def test_a_handler_swallowing_its_stop_still_fails_at_its_time_limit(
    jobs, operations
) -> None:
    op = await submit(jobs, "test.obstinate", empty_pb2.Empty())
    done = await wait_done(operations, op.name)
    assert done.error.code == code_pb2.DEADLINE_EXCEEDED
    # The job's task took its stop back: the pool runs the next job as before.
    after = await submit(jobs, "test.noop", empty_pb2.Empty())
    assert state_name(await wait_done(operations, after.name)) == "SUCCEEDED"
