"""The `lrod` client commands in subprocesses against a real server started
in-process: output (tables, JSON, plain progress lines, the live bar on a
pseudo-terminal) and exit codes.

The server runs on the test's event loop, so the CLI runs through
asyncio.create_subprocess_exec (never subprocess.run, which would block it).
The client is the same over either database, so these run on SQLite only.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import pty
import re
import struct
import sys
import termios
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyte
import pytest

from lrod.app import Service
from tests.jobs import Gates

pytestmark = pytest.mark.slow

LROD = [sys.executable, "-m", "lrod"]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
TIMEOUT = 30.0


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()

    def json(self) -> dict:
        return json.loads(self.out)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "LROD_ADDRESS"):
        env.pop(name, None)
    return env


def _args(service: Service, *args: str) -> list[str]:
    return [*LROD, *args, "--address", f"127.0.0.1:{service.port}"]


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only (overrides the suite's SQLite + PostgreSQL parameters)."""
    return f"sqlite:///{tmp_path / 'lrod.db'}"


async def _start(service: Service, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *_args(service, *args),
        env=_env(),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _finish(process: asyncio.subprocess.Process) -> Result:
    try:
        async with asyncio.timeout(TIMEOUT):
            out, err = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return Result(process.returncode, out.decode(), err.decode())


async def lrod(service: Service, *args: str) -> Result:
    return await _finish(await _start(service, *args))


async def _submit(service: Service, *args: str) -> str:
    result = await lrod(service, "submit", *args)
    assert result.code == 0, result.err
    (name,) = result.lines
    assert name.startswith("operations/")
    return name


async def _started(gates: Gates, key: str) -> None:
    async with asyncio.timeout(TIMEOUT):
        await gates.started_event(key).wait()


async def test_job_types_as_a_table_and_as_json(service) -> None:
    table = await lrod(service, "job-types")
    assert table.code == 0, table.err
    assert table.lines[0].split()[:3] == ["NAME", "INPUT", "OUTPUT"]
    sleep_row = next(line for line in table.lines if line.startswith("examples.sleep "))
    assert "lrod.examples.v1.SleepJob" in sleep_row
    assert "lrod.examples.v1.SleepResult" in sleep_row

    as_json = await lrod(service, "job-types", "--json")
    assert as_json.code == 0, as_json.err
    types = {t["name"]: t for t in as_json.json()["jobTypes"]}
    assert types["examples.flaky"]["inputType"] == "lrod.examples.v1.FlakyJob"
    assert types["examples.flaky"]["maxAttempts"] == 5
    assert set(types) >= {"examples.sleep", "examples.export_report", "test.gate"}


async def test_submit_wait_prints_one_plain_line_per_change(service) -> None:
    result = await lrod(
        service,
        "submit",
        "examples.sleep",
        "--input",
        '{"duration": "0.6s", "steps": 3}',
        "--wait",
    )
    assert result.code == 0, result.err
    assert "\x1b" not in result.out, "no terminal codes when stdout is not a terminal"
    *progress, outcome = result.lines
    name = progress[0].split()[0]
    assert name.startswith("operations/")
    assert all(line.split()[0] == name for line in progress)
    assert progress[0].split()[1] == "QUEUED" or progress[0].split()[1] == "RUNNING"
    assert progress[-1].split()[1] == "SUCCEEDED"
    assert len(set(progress)) == len(progress), "a line only when something changed"
    shares = [int(m.group(1)) for line in progress if (m := re.search(r" (\d+)% \(", line))]
    assert shares == sorted(shares)
    assert shares[-1] == 100
    assert {33, 66} & set(shares), progress
    assert any("stage=sleeping" in line for line in progress)
    assert any(re.search(r" eta=\d+s$", line) for line in progress), "an ETA while running"
    assert json.loads(outcome.removeprefix("result: ")) == {
        "@type": "type.googleapis.com/lrod.examples.v1.SleepResult",
        "stepsDone": 3,
    }


async def test_submit_wait_json_unpacks_metadata_and_response(service) -> None:
    result = await lrod(
        service, "submit", "examples.flaky", "--input", '{"failTimes": 1}', "--wait", "--json"
    )
    assert result.code == 0, result.err
    op = result.json()
    assert op["done"] is True
    assert op["name"].startswith("operations/")
    assert op["metadata"]["@type"] == "type.googleapis.com/lrod.v1.OperationMetadata"
    assert op["metadata"]["state"] == "SUCCEEDED"
    assert op["metadata"]["attempt"] == 2
    assert op["metadata"]["lastAttemptError"]["details"][0]["reason"] == (
        "TEMPORARY_FAILURE_REQUESTED"
    )
    assert op["response"] == {
        "@type": "type.googleapis.com/lrod.examples.v1.FlakyResult",
        "attempts": 2,
    }
    assert "error" not in op


async def test_a_failed_job_exits_1_with_its_public_error_only(service) -> None:
    failed = await lrod(
        service, "submit", "examples.flaky", "--input", '{"permanent": true}', "--wait"
    )
    assert failed.code == 1
    assert "FAILED_PRECONDITION (PERMANENT_FAILURE_REQUESTED)" in failed.err
    assert failed.lines[-1].split()[1] == "FAILED"

    crashed = await lrod(service, "submit", "test.crash", "--input", '"s3cret"', "--wait", "--json")
    assert crashed.code == 1
    op = crashed.json()
    assert op["error"]["code"] == 13
    assert op["error"]["details"][0]["reason"] == "HANDLER_ERROR"
    for text in (crashed.out, crashed.err):
        assert "s3cret" not in text
        assert "Traceback" not in text


async def test_cancel_ends_a_watch_with_exit_3(service, gates) -> None:
    name = await _submit(service, "test.block", "--input", '"to-cancel"')
    watch = await _start(service, "watch", name)
    await _started(gates, "to-cancel")
    cancelled = await lrod(service, "cancel", name)
    assert cancelled.code == 0, cancelled.err
    assert cancelled.out.startswith(name)
    assert "RUNNING (cancel requested)" in cancelled.out or "CANCELLED" in cancelled.out
    watched = await _finish(watch)
    assert watched.code == 3, watched.err
    assert watched.lines[-1].split()[:2] == [name, "CANCELLED"]
    assert f"{name} cancelled: CANCELLED (OPERATION_CANCELLED)" in watched.err
    assert gates.saw_cancel == ["to-cancel"]

    waited = await lrod(service, "wait", name)
    assert waited.code == 3
    assert re.search(r"^state:\s+CANCELLED$", waited.out, re.M)


async def test_wait_exits_4_until_done_then_0(service, gates) -> None:
    name = await _submit(service, "test.gate", "--input", '"slow"')
    await _started(gates, "slow")
    pending = await lrod(service, "wait", name, "--timeout", "0.3")
    assert pending.code == 4, pending.err
    assert re.search(r"^state:\s+RUNNING$", pending.out, re.M)
    gates.gate("slow").set()
    done = await lrod(service, "wait", name, "--timeout", "20", "--json")
    assert done.code == 0, done.err
    assert done.json()["response"]["value"] == "opened slow"
    assert done.json()["metadata"]["progress"]["stage"] == "opened"


async def test_get_list_and_delete(service) -> None:
    batch = uuid.uuid4().hex[:8]
    names = [
        await _submit(service, "test.noop", "--label", f"batch={batch}", "--label", f"n={i}")
        for i in range(3)
    ]
    for name in names:
        assert (await lrod(service, "wait", name, "--timeout", "20")).code == 0

    table = await lrod(service, "list", "--filter", f'labels.batch = "{batch}"')
    assert table.code == 0, table.err
    assert table.lines[0].split() == [
        "NAME",
        "TYPE",
        "STATE",
        "PROGRESS",
        "ATTEMPT",
        "CREATED",
        "LABELS",
    ]
    rows = [line.split() for line in table.lines[1:]]
    assert [row[0] for row in rows] == names[::-1], "newest first"
    assert all(row[1:3] == ["test.noop", "SUCCEEDED"] for row in rows)

    first = await lrod(service, "list", "--filter", f'labels.batch = "{batch}"', "--page-size", "1")
    assert len(first.lines) == 2
    assert "--page-token" in first.err

    every = await lrod(
        service,
        "list",
        "--filter",
        f'labels.batch = "{batch}"',
        "--page-size",
        "1",
        "--all",
        "--json",
    )
    assert every.code == 0, every.err
    listed = every.json()
    assert [op["name"] for op in listed["operations"]] == names[::-1]
    assert listed["nextPageToken"] == ""

    shown = await lrod(service, "get", names[0], "--json")
    assert shown.code == 0, shown.err
    assert shown.json()["metadata"]["labels"] == {"batch": batch, "n": "0"}
    by_id = await lrod(service, "get", names[0].removeprefix("operations/"))
    assert re.search(r"^state:\s+SUCCEEDED$", by_id.out, re.M)
    assert re.search(rf"^labels:\s+batch={batch}, n=0$", by_id.out, re.M)

    deleted = await lrod(service, "delete", names[0])
    assert deleted.code == 0, deleted.err
    assert deleted.out.strip() == f"deleted {names[0]}"
    gone = await lrod(service, "get", names[0])
    assert gone.code == 5
    assert f"error: NOT_FOUND: Operation {names[0]} was not found." in gone.err
    assert "reason: OPERATION_NOT_FOUND (domain lrod)" in gone.err
    assert "Traceback" not in gone.err


async def test_submit_options_reach_the_server(service, gates, tmp_path: Path) -> None:
    request_id = str(uuid.uuid4())
    input_file = tmp_path / "input.json"
    input_file.write_text('"opts"')
    common = ("test.gate", "--input", f"@{input_file}", "--label", "team=blue", "--priority", "7")
    first = await _submit(service, *common, "--request-id", request_id, "--timeout", "30")
    again = await _submit(service, *common, "--request-id", request_id, "--timeout", "30")
    assert again == first, "the same request_id returns the same operation"
    reused = await lrod(service, "submit", "test.noop", "--request-id", request_id)
    assert reused.code == 5
    assert "ALREADY_EXISTS" in reused.err
    assert "reason: REQUEST_ID_REUSED" in reused.err

    await _started(gates, "opts")
    deduped = [
        await _submit(service, "test.gate", "--input", '"opts"', "--dedupe-key", "k") for _ in "ab"
    ]
    assert deduped[0] == deduped[1], "one active operation per dedupe key"

    shown = (await lrod(service, "get", first, "--json")).json()
    assert shown["metadata"]["labels"] == {"team": "blue"}
    assert shown["metadata"]["priority"] == 7
    gates.gate("opts").set()


async def test_rpc_errors_exit_5_with_status_and_details(service) -> None:
    invalid = await lrod(
        service, "submit", "test.noop", "--priority", "1000", "--label", "Bad Key=x"
    )
    assert invalid.code == 5
    assert invalid.out == ""
    assert invalid.err.startswith("error: INVALID_ARGUMENT: Invalid request:")
    assert "reason: INVALID_LABEL (domain lrod)" in invalid.err
    assert "  priority: must be from -100 to 100" in invalid.err
    assert "Traceback" not in invalid.err

    unreachable = await _finish(
        await asyncio.create_subprocess_exec(
            *LROD,
            "get",
            "operations/x",
            "--address",
            "127.0.0.1:1",
            env=_env(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    )
    assert unreachable.code == 5
    assert unreachable.err.startswith("error: UNAVAILABLE:")
    assert "Traceback" not in unreachable.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("submit", "no.such.type"), "the server has no job type 'no.such.type'"),
        (("submit", "examples.sleep", "--input", "{not json"), "not a lrod.examples.v1.SleepJob"),
        (("submit", "examples.sleep", "--input", '{"nope": 1}'), 'no field named "nope"'),
        (("submit", "examples.sleep", "--label", "novalue"), "expected KEY=VALUE"),
        (("submit", "examples.sleep", "--timeout", "0"), "--timeout"),
        (("get",), "Missing argument 'NAME'"),
        (("list", "--proto-module", "no_such_pb2"), "No module named 'no_such_pb2'"),
    ],
)
async def test_usage_errors_exit_2(service, args, message) -> None:
    result = await lrod(service, *args)
    assert result.code == 2, result
    assert message in result.err
    assert "Traceback" not in result.err


async def test_watch_json_prints_one_object_per_change(service) -> None:
    name = await _submit(service, "examples.sleep", "--input", '{"duration": "0.4s", "steps": 2}')
    result = await lrod(service, "watch", name, "--json")
    assert result.code == 0, result.err
    updates = [json.loads(line) for line in result.lines]
    assert all(u["name"] == name for u in updates)
    assert [u["done"] for u in updates] == [False] * (len(updates) - 1) + [True]
    assert updates[-1]["response"]["stepsDone"] == 2
    completed = [int(u["metadata"]["progress"]["completed"]) for u in updates]
    assert completed == sorted(completed)


async def _run_on_terminal(args: list[str], columns: int = 160) -> tuple[int, str, list[bytes]]:
    """Run with stdout and stderr on a pseudo-terminal `columns` wide: the
    exit code, the output, and the output as it came (chunk by chunk)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = _env() | {"TERM": "xterm-256color", "COLUMNS": str(columns)}
    process = await asyncio.create_subprocess_exec(
        *args, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=slave, stderr=slave
    )
    os.close(slave)
    loop = asyncio.get_running_loop()
    chunks: list[bytes] = []
    closed = asyncio.Event()

    def readable() -> None:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: every writer of the terminal has closed it
            data = b""
        if data:
            chunks.append(data)
        else:
            loop.remove_reader(master)
            closed.set()

    loop.add_reader(master, readable)
    try:
        async with asyncio.timeout(TIMEOUT):
            await closed.wait()
            await process.wait()
    finally:
        loop.remove_reader(master)
        os.close(master)
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, b"".join(chunks).decode(errors="replace"), chunks


@pytest.mark.parametrize("columns", [80, 120])
async def test_submit_wait_draws_a_live_bar_on_a_terminal(service, columns: int) -> None:
    code, raw, chunks = await _run_on_terminal(
        _args(
            service,
            "submit",
            "examples.sleep",
            "--input",
            '{"duration": "1.6s", "steps": 4}',
            "--wait",
        ),
        columns,
    )
    assert code == 0, raw
    assert "\x1b[?25l" in raw, "the cursor is hidden while the bar is drawn in place"
    # What the terminal showed, frame by frame, as a terminal emulator draws it.
    screen = pyte.Screen(columns, 40)
    stream = pyte.ByteStream(screen)
    frames: list[str] = []
    for chunk in chunks:
        stream.feed(chunk)
        frames += [line.rstrip() for line in screen.display if "━" in line or "─" in line]
    assert frames, raw
    assert all(len(frame) < columns for frame in frames), "the bar fits the terminal"
    running = [f for f in frames if "RUNNING" in f]
    # The bar, the percentage and count, the stage and the ETA, at 80 columns too.
    progress = r"━+─* +(25|50|75)% +[123]/4 +sleeping +RUNNING +eta \d+s"
    assert any(re.search(progress, f) for f in running), frames
    last = frames[-1]
    assert re.search(r"━{10,} +100% +4/4 +sleeping +SUCCEEDED", last), last
    if columns >= 120:
        assert "sleep " in last, "the short name shows when there is room"
    shown = "".join(screen.display)  # wrapped lines read on, as on the screen
    assert '"stepsDone": 4' in shown


async def test_submit_batch_from_a_jsonl_file(service, tmp_path: Path) -> None:
    lines = [
        json.dumps({"jobType": "examples.sleep", "input": {"steps": i}, "labels": {"n": str(i)}})
        for i in range(3)
    ]
    batch = tmp_path / "jobs.jsonl"
    batch.write_text("\n".join([lines[0], "", *lines[1:]]) + "\n")
    result = await lrod(service, "submit", "--batch", str(batch))
    assert result.code == 0, result.err
    assert len(result.lines) == 3
    for i, name in enumerate(result.lines):
        shown = await lrod(service, "get", name, "--json")
        assert shown.json()["metadata"]["labels"] == {"n": str(i)}

    bad = tmp_path / "bad.jsonl"
    bad.write_text(lines[0] + "\n" + json.dumps({"jobType": "examples.sleep", "priority": 999}))
    refused = await lrod(service, "submit", "--batch", str(bad))
    assert refused.code == 5
    assert "requests[1].priority" in refused.err
    assert "Traceback" not in refused.err

    unknown = tmp_path / "unknown.jsonl"
    unknown.write_text(json.dumps({"jobType": "no.such"}) + "\n")
    usage = await lrod(service, "submit", "--batch", str(unknown))
    assert usage.code == 2
    assert "line 1" in usage.err
