"""The README's walk-through, as a newcomer pastes it: the one-minute tour's
Python, the CLI tour's shell and the HTTP quickstart's curl, run against a
real `lrod serve`."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[2] / "README.md"
LROD = [sys.executable, "-m", "lrod"]


def _block(after: str, language: str) -> str:
    """The first ```language block after the heading `after`."""
    text = README.read_text()
    start = text.index(after)
    found = re.search(rf"```{language}\n(.*?)```", text[start:], re.DOTALL)
    assert found, f"no {language} block after {after!r}"
    return found.group(1)


@asynccontextmanager
async def _serving(tmp_path: Path, *flags: str) -> AsyncIterator[dict[str, str]]:
    """A real `lrod serve` on SQLite; the environment a newcomer's shell has,
    with LROD_ADDRESS (and LROD_HTTP_ADDRESS with --http-address) set to the
    ports it got."""
    url = f"sqlite:///{tmp_path / 'lrod.db'}"
    env = os.environ | {"LROD_DATABASE_URL": url, "LROD_EXPORT_DIR": str(tmp_path / "exports")}
    process = await asyncio.create_subprocess_exec(
        # A short drain: the tours leave 60 s sleeps running, handed back at stop.
        *LROD, "serve", "--address", "127.0.0.1:0", "--drain-seconds", "0.5", *flags,
        cwd=tmp_path, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stderr is not None
    ports: dict[str, str] = {}
    wanted = {"grpc"} | ({"http"} if "--http-address" in flags else set())
    async with asyncio.timeout(30):
        while ports.keys() != wanted:
            line = (await process.stderr.readline()).decode()
            assert line, "the server stopped"
            if found := re.search(r"serving (HTTP )?on port (\d+)", line):
                ports["http" if found.group(1) else "grpc"] = found.group(2)
    drain = asyncio.create_task(process.stderr.read())
    try:
        yield env | {
            "LROD_ADDRESS": f"127.0.0.1:{ports['grpc']}",
            **({"LROD_HTTP_ADDRESS": f"127.0.0.1:{ports['http']}"} if "http" in ports else {}),
        }
    finally:
        process.terminate()
        async with asyncio.timeout(30):
            await process.wait()
        log = (await drain).decode()
        # (Attempt lines at INFO carry a retried attempt's internal error text.)
        assert not re.search(r"^\S+ \S+ (ERROR|CRITICAL) ", log, re.MULTILINE), log


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    async with _serving(tmp_path) as env:
        yield env


async def _run(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *args, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(120):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_the_one_minute_tour(server, tmp_path) -> None:
    code = _block("## A one-minute tour", "python")
    code = code.replace("127.0.0.1:50051", server["LROD_ADDRESS"])
    (tmp_path / "tour.py").write_text(code)
    status, out, err = await _run([sys.executable, "tour.py"], tmp_path, server)
    assert status == 0, err
    assert "True 4" in out
    assert out.strip().endswith("SUCCEEDED 4/4"), out


async def test_the_cli_tour(server, tmp_path) -> None:
    script = _block("## CLI tour", "bash")
    (tmp_path / "jobs.jsonl").write_text(
        '{"jobType": "examples.sleep", "input": {"steps": 1}}\n'
        '{"jobType": "examples.flaky", "input": {"failTimes": 1}}\n'
    )
    # `lrod` on the PATH, as the README says to put it.
    env = server | {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    status, out, err = await _run(["bash", "-euo", "pipefail", "-c", script], tmp_path, env)
    assert status == 0, f"{out}\n{err}"
    # (`lrod attempts` shows operators the internal error text, tracebacks included.)
    assert "Traceback" not in err
    names = re.findall(r"^operations/[\w-]{22}$", out, re.MULTILINE)
    assert names, out
    # The dedupe example: the second submit printed the first's operation.
    assert any(names.count(n) >= 2 for n in names), out
    assert "RETRIED" in out  # the attempts of the flaky job


async def test_the_http_quickstart(tmp_path) -> None:
    script = _block("### The same over HTTP", "sh")
    async with _serving(tmp_path, "--http-address", "127.0.0.1:0") as env:
        base = f"http://{env['LROD_HTTP_ADDRESS']}"
        script = script.replace("http://127.0.0.1:8080", base)
        status, out, err = await _run(["bash", "-euo", "pipefail", "-c", script], tmp_path, env)
    assert status == 0, f"{out}\n{err}"
    # The submit's headers: 202, the absolute status URL, the poll hint.
    assert re.search(r"^HTTP/1.1 202 Accepted\r?$", err, re.MULTILINE), err
    location = re.search(
        rf"^Location: ({re.escape(base)}/v1/operations/[\w-]{{22}})\r?$", err, re.M
    )
    assert location, err
    assert re.search(r"^Retry-After: \d+\r?$", err, re.MULTILINE), err
    running, waited, result = (json.loads(line) for line in out.strip().splitlines())
    name = location.group(1).removeprefix(f"{base}/v1/")
    assert running["name"] == waited["name"] == name
    assert waited["done"] is True
    # Followed the 303 to the finished resource: the job's typed result.
    assert result == waited["response"]
    assert result["@type"] == "type.googleapis.com/lrod.examples.v1.SleepResult"
