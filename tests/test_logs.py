"""Structured logs: one JSON object per line with --log-json, job lines that
carry operation, job type, attempt and worker, and internal errors that
reach the logs but never the caller."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.longrunning import operations_pb2, operations_pb2_grpc
from google.protobuf import duration_pb2, wrappers_pb2

from lrod.examples.v1 import examples_pb2 as ex
from lrod.logs import JsonFormatter, TextFormatter, with_fields
from lrod.v1 import job_service_pb2_grpc
from tests.helpers import submit

ROOT = Path(__file__).resolve().parents[1]
JOB_FIELDS = ("operation", "job_type", "attempt", "worker")


def _record(**extra: Any) -> logging.LogRecord:
    logger = logging.getLogger("lrod.test")
    return logger.makeRecord(
        "lrod.test", logging.INFO, __file__, 1, "hello %s", ("you",), None, extra=extra
    )


def test_json_lines_carry_the_fields_and_keep_the_standard_keys() -> None:
    line = JsonFormatter().format(_record(operation="operations/x", attempt=2, level="spoofed"))
    assert "\n" not in line
    event = json.loads(line)
    assert event["message"] == "hello you"
    assert event["level"] == "info", "an extra field cannot overwrite the standard keys"
    assert event["logger"] == "lrod.test"
    assert event["operation"] == "operations/x"
    assert event["attempt"] == 2
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+\+00:00", event["time"])


def test_a_traceback_stays_on_the_event_line_in_json() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("lrod.test").makeRecord(
            "lrod.test", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    event = json.loads(line)
    assert event["traceback"].startswith("Traceback (most recent call last)")
    assert "ValueError: boom" in event["traceback"]


def test_text_lines_show_the_fields() -> None:
    line = TextFormatter().format(_record(operation="operations/x", job_type="a.b"))
    assert line.endswith("INFO    lrod.test: hello you operation='operations/x' job_type='a.b'")


def test_event_logger_merges_its_fields_with_each_call() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("lrod.test.adapter")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        job_log = with_fields(logger, operation="operations/y", attempt=1)
        job_log.info("one", extra={"reason": "R"})
        job_log.info("two")
    finally:
        logger.removeHandler(handler)
    one, two = (json.loads(line) for line in stream.getvalue().splitlines())
    assert one["operation"] == two["operation"] == "operations/y"
    assert one["reason"] == "R"
    assert "reason" not in two


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """The lrod loggers' lines, formatted as --log-json formats them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("lrod")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def test_job_lines_carry_operation_job_type_attempt_and_worker(
    captured, service, jobs, operations
) -> None:
    op = await submit(jobs, "test.crash", wrappers_pb2.StringValue(value="s3cret-detail"))
    done = await operations.WaitOperation(
        operations_pb2.WaitOperationRequest(name=op.name, timeout=duration_pb2.Duration(seconds=20))
    )
    assert done.done
    assert "s3cret" not in str(done), "the internal error stays out of the operation"
    # The closing line is written just after the finishing write.
    async with asyncio.timeout(5):
        while '"job failed"' not in captured.getvalue():
            await asyncio.sleep(0.02)
    events = [json.loads(line) for line in captured.getvalue().splitlines()]
    about = [e for e in events if e.get("operation") == op.name]
    mine = [e for e in about if e["logger"] == "lrod.worker"]
    assert [e["message"] for e in mine] == ["attempt started", "job failed"]
    # The seam where jobs end writes the operation's line (after the commit).
    [ended] = [e for e in about if e["logger"] == "lrod.store"]
    assert ended["message"] == "operation ended"
    assert (ended["state"], ended["ended_by"]) == ("FAILED", "worker")
    assert "s3cret" not in json.dumps(ended)
    assert service.pool is not None
    for event in mine:
        assert event["job_type"] == "test.crash"
        assert event["attempt"] == 1
        assert event["worker"] == service.pool.settings.worker_id
        assert event["logger"] == "lrod.worker"
    failed = mine[-1]
    assert failed["level"] == "error"
    assert failed["reason"] == "HANDLER_ERROR"
    assert failed["code"] == "INTERNAL"
    assert failed["retry_at"] is None
    assert "ValueError: internal detail: s3cret-detail" in failed["internal_error"]
    assert "Traceback (most recent call last)" in failed["internal_error"]


@pytest.mark.slow
async def test_serve_with_log_json_writes_only_json_lines(tmp_path) -> None:
    env = os.environ | {
        "LROD_DATABASE_URL": f"sqlite:///{tmp_path / 'lrod.db'}",
        "LROD_ADDRESS": "127.0.0.1:0",
    }
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "lrod",
        "--log-json",
        "serve",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert server.stderr is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(30):
            while not (port := re.search(r"serving on port (\d+)", lines[-1] if lines else "")):
                line = (await server.stderr.readline()).decode()
                assert line, "lrod serve exited before serving"
                lines.append(line)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port.group(1)}") as channel:
            jobs = job_service_pb2_grpc.JobServiceStub(channel)
            operations = operations_pb2_grpc.OperationsStub(channel)
            op = await submit(jobs, "examples.flaky", ex.FlakyJob(fail_times=1))
            done = await operations.WaitOperation(
                operations_pb2.WaitOperationRequest(
                    name=op.name, timeout=duration_pb2.Duration(seconds=20)
                )
            )
            assert done.done
    finally:
        server.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            _, rest = await server.communicate()
    assert server.returncode == 0
    lines += (rest or b"").decode().splitlines()
    events = [json.loads(line) for line in lines if line.strip()]  # every line is JSON
    assert {"time", "level", "logger", "message"} <= set(events[0])
    job_events = [e for e in events if e.get("operation") == op.name]
    messages = [e["message"] for e in job_events]
    assert messages == [
        "attempt started",
        "attempt failed; will retry",
        "attempt started",
        # The seam's line, told at the commit, before the worker's closing one.
        "operation ended",
        "attempt ended: succeeded",
    ]
    for event in job_events:
        assert set(JOB_FIELDS) <= set(event)
        assert event["job_type"] == "examples.flaky"
        assert re.fullmatch(r".+:\d+:[0-9a-f]{6}", event["worker"])
    assert [e["attempt"] for e in job_events] == [1, 1, 2, 2, 2]
    assert job_events[1]["level"] == "info"
    assert job_events[1]["reason"] == "TEMPORARY_FAILURE_REQUESTED"
    assert job_events[1]["retry_at"]
    assert job_events[-1]["state"] == "SUCCEEDED"
