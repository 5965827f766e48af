"""The safe default: `lrod serve` on an address beyond loopback without
authentication refuses to start (every listener), unless --insecure says so
on purpose, and then warns; an address without a host is loopback. The
HTTP door refuses what a web page could forge."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from lrod.app import Service
from lrod.http.server import HttpFrontDoor
from lrod.listen import split_address

LROD = [sys.executable, "-m", "lrod"]


def _env(tmp_path: Path) -> dict[str, str]:
    return os.environ | {
        "LROD_DATABASE_URL": f"sqlite:///{tmp_path / 'lrod.db'}",
        "LROD_EXPORT_DIR": str(tmp_path / "exports"),
    }


async def _serve(tmp_path: Path, *args: str) -> tuple[int, str]:
    """Run `lrod serve ARGS` until it serves (then SIGTERM) or exits."""
    process = await asyncio.create_subprocess_exec(
        *LROD,
        "serve",
        "--concurrency",
        "0",
        *args,
        env=_env(tmp_path),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    lines: list[str] = []
    async with asyncio.timeout(30):
        while True:
            line = (await process.stderr.readline()).decode()
            if not line:
                break
            lines.append(line)
            if re.search(r"serving HTTP on port|serving on port", line) and (
                "--http-address" not in args or "HTTP" in line
            ):
                process.send_signal(signal.SIGTERM)
        code = await process.wait()
    return code, "".join(lines)


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        ("--address", "0.0.0.0:0"),
        ("--address", "127.0.0.1:0", "--http-address", "0.0.0.0:0"),
    ],
)
async def test_serve_refuses_a_non_loopback_listener_without_authentication(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    code, stderr = await _serve(tmp_path, *args)
    assert code == 2, stderr
    assert "refusing to serve" in stderr
    assert "without authentication" in stderr
    assert "Traceback" not in stderr


@pytest.mark.slow
async def test_insecure_serves_on_purpose_with_a_warning(tmp_path: Path) -> None:
    _code, stderr = await _serve(tmp_path, "--address", "0.0.0.0:0", "--insecure")
    assert re.search(r"serving on port \d+", stderr), stderr
    assert stderr.count("serving without authentication on gRPC 0.0.0.0:0") == 1


def test_an_address_without_a_host_is_loopback() -> None:
    assert split_address("8080") == ("127.0.0.1", 8080)
    assert split_address(":8080") == ("127.0.0.1", 8080)
    assert split_address("[::]:8080") == ("::", 8080)
    with pytest.raises(ValueError, match="port"):
        split_address("localhost:http")


async def test_http_door_refuses_forgeable_requests(service: Service) -> None:
    door = HttpFrontDoor(service.manager, ":0")
    await door.start()
    body = '{"jobType": "examples.sleep"}'
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{door.port}") as http:
            for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
                headers = {"Content-Type": content_type} if content_type else {}
                refused = await http.post(
                    "/v1/operations:submit", data=body.encode(), headers=headers
                )
                assert refused.status == 415
                error = (await refused.json())["error"]
                assert error["details"][0]["reason"] == "UNSUPPORTED_MEDIA_TYPE"
            rebound = await http.get("/v1/jobTypes", headers={"Host": "attacker.example:80"})
            assert rebound.status == 421
            assert (await rebound.json())["error"]["details"][0]["reason"] == "HOST_NOT_ALLOWED"
            assert (await http.get("/v1/jobTypes", headers={"Host": "localhost:1"})).status == 200
            listed = await http.get("/v1/operations")
            assert listed.status == 200
        listed_ops = await service.manager.list(__import__("lrod.auth").auth.ANONYMOUS, "", 0, "")
        assert list(listed_ops.operations) == []  # nothing was submitted
    finally:
        await door.stop()
