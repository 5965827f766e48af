"""A newcomer's mistakes, through the real CLI in subprocesses: each ends in
one or two lines that name the problem and the fix, exit 2 for usage and
configuration errors, and never a traceback."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

LROD = [sys.executable, "-m", "lrod"]
_INFO = re.compile(r"\d{4}-\d\d-\d\d [\d:,]+ INFO ")


async def _run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *LROD, *args, cwd=cwd, env=env or dict(os.environ),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def _one_or_two_lines(code: int, out: str, err: str, expected_code: int = 2) -> list[str]:
    assert "Traceback" not in out + err, err
    assert code == expected_code, (code, out, err)
    # A server's INFO log lines may come first; nothing else may.
    lines = [line for line in err.strip().splitlines() if line.strip() and not _INFO.match(line)]
    assert 1 <= len(lines) <= 2, err
    return lines


@pytest.fixture
def taken() -> int:
    """A port something else listens on."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    yield holder.getsockname()[1]
    holder.close()


@pytest.mark.parametrize("flag", ["--address", "--http-address", "--metrics-address"])
async def test_a_port_in_use_is_one_line_with_the_fix(tmp_path, taken, flag) -> None:
    args = ["serve", "--database-url", f"sqlite:///{tmp_path / 'x.db'}", "--address", "127.0.0.1:0"]
    code, out, err = await _run(*args, flag, f"127.0.0.1:{taken}", cwd=tmp_path)
    first, fix = _one_or_two_lines(code, out, err)
    assert f"cannot listen on 127.0.0.1:{taken}" in first
    assert flag in first
    assert "choose another" in fix


async def test_worker_metrics_port_in_use(tmp_path, taken) -> None:
    code, out, err = await _run(
        "worker", "--database-url", f"sqlite:///{tmp_path / 'x.db'}",
        "--metrics-address", f"127.0.0.1:{taken}", cwd=tmp_path,
    )  # fmt: skip
    assert "--metrics-address" in _one_or_two_lines(code, out, err)[0]


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("mysql://u@localhost/db", "not supported"),
        ("lrod.db", "is not a database URL"),
        ("sqlite:///no/such/folder/lrod.db", "does not exist"),
        ("postgresql://lrod@127.0.0.1:1/lrod", "cannot open the database"),
    ],
)
@pytest.mark.parametrize("command", ["serve", "worker", "db upgrade"])
async def test_bad_database_urls(tmp_path, url, says, command) -> None:
    extra = ["--address", "127.0.0.1:0"] if command == "serve" else []
    code, out, err = await _run(*command.split(), "--database-url", url, *extra, cwd=tmp_path)
    lines = _one_or_two_lines(code, out, err)
    assert says in lines[0] or says in lines[-1], err
    assert "--database-url" in err or "database" in lines[0]
    assert not (tmp_path / "no").exists()


async def test_attempts_outside_the_repository_creates_no_database(tmp_path) -> None:
    code, out, err = await _run("attempts", "AAAAAAAAAAAAAAAAAAAAAA", cwd=tmp_path)
    (line,) = _one_or_two_lines(code, out, err)
    assert "no database at" in line
    assert "--database-url" in line
    assert not (tmp_path / "lrod.db").exists()


async def test_attempts_with_a_bad_name_or_an_unknown_operation(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'lrod.db'}"
    code, _, err = await _run("db", "upgrade", "--database-url", url, cwd=tmp_path)
    assert code == 0, err
    code, out, err = await _run("attempts", "foo", "--database-url", url, cwd=tmp_path)
    assert "give operations/ID or the ID" in _one_or_two_lines(code, out, err)[0]
    code, out, err = await _run(
        "attempts", "AAAAAAAAAAAAAAAAAAAAAA", "--database-url", url, cwd=tmp_path
    )
    (line,) = _one_or_two_lines(code, out, err, expected_code=1)
    assert "no operation operations/AAAAAAAAAAAAAAAAAAAAAA" in line


async def test_help_shows_variables_and_version_works(tmp_path) -> None:
    code, out, _ = await _run("--version", cwd=tmp_path)
    assert code == 0
    assert re.fullmatch(r"lrod \S+\n", out)
    code, out, _ = await _run("worker", "--help", cwd=tmp_path)
    assert code == 0
    assert "LROD_LEASE_SECONDS" in out
    assert "0 serves" not in out  # worker refuses 0


async def _serve(tmp_path: Path, *args: str) -> tuple[asyncio.subprocess.Process, int, list[str]]:
    process = await asyncio.create_subprocess_exec(
        *LROD, "serve", "--address", "127.0.0.1:0", "--database-url",
        f"sqlite:///{tmp_path / 'lrod.db'}", *args, cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        env=os.environ | {"LROD_EXPORT_DIR": str(tmp_path)},
    )  # fmt: skip
    assert process.stderr is not None
    seen: list[str] = []
    port = 0
    async with asyncio.timeout(30):
        while "worker ready" not in "".join(seen):
            line = (await process.stderr.readline()).decode()
            assert line, "".join(seen)
            seen.append(line)
            if found := re.search(r"serving on port (\d+)", line):
                port = int(found.group(1))
    return process, port, seen


async def test_ready_line_second_ctrl_c_and_client_wording(tmp_path) -> None:
    process, port, seen = await _serve(tmp_path, "--drain-seconds", "60")
    assert re.search(r"worker ready: 4 slots for job types .*examples\.sleep", "".join(seen))
    address = ["--address", f"127.0.0.1:{port}"]
    try:
        code, out, err = await _run("list", *address, cwd=tmp_path)
        assert (code, out.strip()) == (0, "no operations yet"), err
        code, name, err = await _run(
            "submit", "examples.sleep", "--input", '{"duration": "60s", "steps": 60}', *address,
            cwd=tmp_path,
        )  # fmt: skip
        name = name.strip()
        code, out, err = await _run("wait", name, "--timeout", "0.5", *address, cwd=tmp_path)
        assert code == 4
        assert f"{name} is not done after 0.5 s; it goes on" in err
        # Ctrl-C while following: the job goes on, and how to follow or cancel it.
        watcher = await asyncio.create_subprocess_exec(
            *LROD, "watch", name, *address, cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert watcher.stdout is not None
        async with asyncio.timeout(20):
            await watcher.stdout.readline()  # it is following
        watcher.send_signal(signal.SIGINT)
        async with asyncio.timeout(20):
            _, watch_err = await watcher.communicate()
        assert watcher.returncode == 130
        assert "the job goes on" in watch_err.decode()
        assert f"lrod cancel {name}" in watch_err.decode()
        assert "Traceback" not in watch_err.decode()
    finally:
        # The server drains for up to 60 s on the first signal; a second cuts it short.
        process.send_signal(signal.SIGINT)
        assert process.stderr is not None
        async with asyncio.timeout(30):
            while "Ctrl-C again" not in (line := (await process.stderr.readline()).decode()):
                assert line
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            rest = (await process.stderr.read()).decode()
            await process.wait()
    assert "handing running jobs back now" in rest
    assert "Traceback" not in rest
