"""The HTTP door under hostile input: never a 5xx for a bad request, bounds
on slow and idle clients and on connections, and absolute Location URLs
(trusted proxies only)."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator

import aiohttp
import pytest

from lrod.app import Service
from lrod.http.server import HttpFrontDoor
from lrod.settings import HttpSettings

SUBMIT = b'{"jobType": "examples.sleep", "input": {"@type": "type.googleapis.com/lrod.examples.v1.SleepJob", "steps": 1}}'  # noqa: E501


async def _door(service: Service, **settings: object) -> HttpFrontDoor:
    door = HttpFrontDoor(service.manager, "127.0.0.1:0", http=HttpSettings(**settings))  # type: ignore[arg-type]
    await door.start()
    return door


@pytest.fixture
async def door(service: Service) -> AsyncIterator[HttpFrontDoor]:
    opened = await _door(service, read_timeout=0.5, idle_timeout=0.5, max_connections=20)
    try:
        yield opened
    finally:
        await opened.stop()


async def _raw(port: int, data: bytes, *, wait: float = 5.0) -> bytes:
    """Send `data` as is, and read until the server closes or `wait` passes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    received = b""
    try:
        async with asyncio.timeout(wait):
            while chunk := await reader.read(65536):
                received += chunk
    except TimeoutError:
        pass  # what came before the wait ran out (a server lingering on a body)
    finally:
        writer.close()
    return received


def _post(path: str, body: bytes, *headers: str) -> bytes:
    # JSON unless the case says otherwise: the door refuses state changes of
    # other types before it reads a body (415, tests/auth/test_safe_default.py).
    if not any(h.lower().startswith("content-type:") for h in headers):
        headers = ("Content-Type: application/json", *headers)
    head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


@pytest.mark.parametrize(
    ("body", "headers", "reason"),
    [
        pytest.param(b'{"jobType": "\xff\xfe"}', ["Content-Type: application/json"], b"UNDECODABLE_BODY", id="not-utf8"),  # noqa: E501
        pytest.param(SUBMIT.decode().encode("utf-16"), ["Content-Type: application/json; charset=utf-16"], b"UNSUPPORTED_CHARSET", id="utf-16"),  # noqa: E501
        pytest.param(b"garbage, not deflate", ["Content-Encoding: deflate"], b"UNDECODABLE_BODY", id="bad-deflate"),  # noqa: E501
        pytest.param(b"\x1f\x8b garbage", ["Content-Encoding: gzip"], b"UNDECODABLE_BODY", id="bad-gzip"),  # noqa: E501
        pytest.param(b"[" * 100_000, [], b"INVALID_JSON", id="deep-json"),
        pytest.param(b'{"jobType": 5}', [], b"INVALID_JSON", id="wrong-type"),
        pytest.param(b'{"priority": 1' + b"0" * 5000 + b"}", [], b"INVALID_JSON", id="huge-number"),
    ],
)  # fmt: skip
async def test_bad_bodies_are_400_with_a_reason(door, body, headers, reason) -> None:
    answer = await _raw(
        door.port, _post("/v1/operations:submit", body, "Connection: close", *headers)
    )
    assert _status(answer) == 400, answer[:300]
    assert reason in answer


async def test_a_good_deflate_body_is_read(door) -> None:
    answer = await _raw(
        door.port,
        _post("/v1/operations:submit", zlib.compress(SUBMIT), "Content-Encoding: deflate", "Connection: close"),  # noqa: E501
    )  # fmt: skip
    assert _status(answer) == 202, answer[:300]


@pytest.mark.parametrize(
    "query",
    [
        "pageSize=%C2%B2",
        "pageSize=" + "9" * 5000,
        "pageSize=99999999999",
        "pageSize=-",
        "filter=create_time%20%3E%20%220001-01-01T00:00:00%2B01:00%22",
        "filter=metadata.job_type%20%3D%20%22a%00b%22",
        "pageToken=eyJ0IjoiMjAyNC0wMS0wMVQwMDowMDowMCIsImkiOiJ4IiwiYiI6IiJ9",
        "pageToken=" + "%5B" * 3000,
    ],
)
async def test_bad_queries_are_400(door, query) -> None:
    request = f"GET /v1/operations?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    answer = await _raw(door.port, request.encode())
    assert _status(answer) == 400, answer[:300]


async def test_a_wait_timeout_outside_the_duration_range_is_400(door) -> None:
    body = b'{"timeout": "315576000001s"}'
    answer = await _raw(
        door.port,
        _post("/v1/operations/AAAAAAAAAAAAAAAAAAAAAA:wait", body, "Connection: close"),
    )
    assert _status(answer) == 400, answer[:300]


async def test_a_body_shorter_than_its_length_times_out(door) -> None:
    head = _post("/v1/operations:submit", SUBMIT)[: -len(SUBMIT)]
    head = head.replace(f"Content-Length: {len(SUBMIT)}".encode(), b"Content-Length: 100000")
    answer = await _raw(door.port, head + SUBMIT[:10], wait=3.0)
    assert _status(answer) == 408


async def test_an_idle_or_slow_connection_is_closed(door) -> None:
    # Nothing, then half a request line: the server closes both.
    assert await _raw(door.port, b"") == b""
    assert await _raw(door.port, b"GET /v1/opera") == b""


async def test_connections_beyond_the_bound_get_503(service) -> None:
    bounded = await _door(service, max_connections=3, idle_timeout=5.0)
    held = [await asyncio.open_connection("127.0.0.1", bounded.port) for _ in range(3)]
    try:
        await asyncio.sleep(0.1)
        answer = await _raw(bounded.port, b"", wait=5.0)
        assert _status(answer) == 503
        assert b"TOO_MANY_CONNECTIONS" in answer
    finally:
        for _, writer in held:
            writer.close()
        await bounded.stop()


async def _location(port: int, *headers: str) -> str:
    answer = await _raw(port, _post("/v1/operations:submit", SUBMIT, "Connection: close", *headers))
    assert _status(answer) == 202, answer[:300]
    line = next(h for h in answer.split(b"\r\n") if h.lower().startswith(b"location:"))
    return line.split(b":", 1)[1].strip().decode()


async def test_location_is_absolute_and_trusts_only_configured_proxies(service) -> None:
    plain = await _door(service)
    trusting = await _door(service, trusted_proxies="127.0.0.1")
    public = await _door(service, public_url="https://jobs.example.com/")
    forwarded = ("X-Forwarded-Proto: https", "X-Forwarded-Host: jobs.example.org")
    try:
        assert (await _location(plain.port)).startswith("http://127.0.0.1/v1/operations/")
        untrusted = await _location(plain.port, *forwarded)
        assert untrusted.startswith("http://127.0.0.1/v1/operations/")
        trusted = await _location(trusting.port, *forwarded)
        assert trusted.startswith("https://jobs.example.org/v1/operations/")
        assert (await _location(public.port, *forwarded)).startswith(
            "https://jobs.example.com/v1/operations/"
        )
    finally:
        for door_ in (plain, trusting, public):
            await door_.stop()


async def test_a_client_that_hangs_up_mid_body_leaves_no_traceback(door, caplog) -> None:
    head = _post("/v1/operations:submit", SUBMIT)[: -len(SUBMIT)]
    for _ in range(5):
        _, writer = await asyncio.open_connection("127.0.0.1", door.port)
        writer.write(head + SUBMIT[:5])
        await writer.drain()
        writer.close()
    async with aiohttp.ClientSession() as session:
        response = await session.get(f"http://127.0.0.1:{door.port}/v1/jobTypes")
        assert response.status == 200
    await asyncio.sleep(0.2)
    assert not [r for r in caplog.records if r.exc_info or r.levelname == "ERROR"]
