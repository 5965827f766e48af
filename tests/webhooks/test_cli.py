"""`lrod get` shows an operation's webhook delivery, and `lrod webhooks`
lists deliveries for operators (real CLI processes, SQLite)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from tests.webhooks.support import hooked, shorter

pytestmark = pytest.mark.slow


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'lrod.db'}"


async def _lrod(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "lrod",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode()


async def test_get_and_the_operator_listing_show_deliveries(database_url, receiver) -> None:
    async with hooked(database_url, shorter(schedule="0.1")) as h:
        ok = await h.submit(receiver.url("/ok"))
        bad = await h.submit(receiver.url("/fail"))
        await h.ended(ok.name)
        await h.ended(bad.name)
        address = f"127.0.0.1:{h.service.port}"
        shown = await _lrod("get", ok.name, "--address", address)
        failed = await _lrod("get", bad.name, "--address", address)
    listed = await _lrod("webhooks", "--database-url", database_url)
    only_failed = await _lrod("webhooks", "--state", "failed", "--database-url", database_url)

    [line] = [line for line in shown.splitlines() if line.startswith("webhook:")]
    assert "delivered" in line
    assert "1 attempt," in line
    assert "last status 200" in line
    assert f"id msg_{ok.name.removeprefix('operations/')}" in line
    [line] = [line for line in failed.splitlines() if line.startswith("webhook:")]
    assert "failed" in line
    assert "2 attempts" in line
    assert "last error HTTP_500" in line
    assert len(listed.splitlines()) == 2
    [row] = only_failed.splitlines()
    assert row.startswith(f"{bad.name} FAILED")
    assert "attempts=2 status=500 error=HTTP_500" in row


async def test_the_listing_creates_no_database_where_there_is_none(tmp_path) -> None:
    missing = tmp_path / "nowhere.db"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "lrod",
        "webhooks",
        "--database-url",
        f"sqlite:///{missing}",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        _, err = await process.communicate()
    assert process.returncode == 2
    assert f"no database at {missing}" in err.decode()
    assert not missing.exists()
