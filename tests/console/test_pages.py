"""The console's routes over plain HTTP (no browser): error pages with the
error table's statuses, the event stream, forms refused without their CSRF
token, and a console that can be switched off."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

import lrod.console
from lrod.app import Service
from lrod.console import ASSETS
from tests.console.conftest import console_registry
from tests.console.test_browser import submit, wait_done
from tests.jobs import Gates

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_error_pages_answer_with_the_error_tables_status(base_url: str) -> None:
    async with aiohttp.ClientSession(base_url) as http:
        for path, status, text in [
            ("/console/operations/AAAAAAAAAAAAAAAAAAAAAA", 404, "Not found"),
            ("/console/operations/short", 400, "MALFORMED_NAME"),
            ("/console/no/such/page", 404, "No such page"),
            ("/console/operations?filter=size%20%3E%201", 400, "unknown field"),
            ("/console/operations?labels=nokey", 400, "key=value"),
        ]:
            response = await http.get(path)
            body = await response.text()
            assert (response.status, response.content_type) == (status, "text/html"), path
            assert text in body, path
            assert "Traceback" not in body


async def test_the_stylesheet_and_script_are_served_from_memory(base_url: str) -> None:
    static = Path(lrod.console.__file__).parent / "static"
    # Every file of the folder is served: one added without an entry would 404.
    assert sorted(p.name for p in static.iterdir()) == sorted(ASSETS)
    async with aiohttp.ClientSession(base_url) as http:
        for name, media in ASSETS.items():
            response = await http.get(f"/console/static/{name}")
            assert (response.status, response.content_type) == (200, media), name
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert await response.read() == (static / name).read_bytes()
        for path in ("/console/static/nothing.css", "/console/static/", "/console/static/a/b"):
            missing = await http.get(path)
            assert (missing.status, missing.content_type) == (404, "text/html"), path
            assert "No such page" in await missing.text()


async def test_serving_the_assets_opens_no_file(
    base_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A request cancelled while a file of its own is being opened would drop
    # it open (aiohttp's static route): the assets are answered from memory.
    opened: list[str] = []
    real_open = Path.open

    def spy(self: Path, *args: object, **kwargs: object) -> object:
        if self.parent.name == "static":
            opened.append(self.name)
        return real_open(self, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(Path, "open", spy)
    async with aiohttp.ClientSession(base_url) as http:
        for name in ASSETS:
            assert (await http.get(f"/console/static/{name}")).status == 200
    assert opened == []


async def test_the_event_stream_sends_the_operation_until_done(base_url: str) -> None:
    op_id = await submit(base_url, "examples.sleep", {"duration": "0.3s", "steps": 3})
    events = []
    async with (
        aiohttp.ClientSession(base_url) as http,
        http.get(f"/console/operations/{op_id}/events") as response,
    ):
        assert response.content_type == "text/event-stream"
        async for line in response.content:
            if line.startswith(b"data: "):
                events.append(json.loads(line[6:]))
    assert events[-1]["state"] == "SUCCEEDED"
    assert events[-1]["done"] is True
    assert '"stepsDone": 3' in events[-1]["response"]
    assert all(not e["done"] for e in events[:-1])


async def test_forms_without_their_csrf_token_are_refused(base_url: str) -> None:
    op_id = await submit(base_url, "examples.sleep", {"duration": "0.1s"})
    await wait_done(base_url, op_id)
    async with aiohttp.ClientSession(base_url) as http:
        page = await http.get(f"/console/operations/{op_id}")
        assert page.status == 200  # the browser now holds the CSRF cookie
        for token in ("", "0" * 64):
            refused = await http.post(
                f"/console/operations/{op_id}/delete",
                data={"csrf_token": token},
                allow_redirects=False,
            )
            assert refused.status == 403
        assert (await http.get(f"/console/operations/{op_id}")).status == 200


async def test_the_console_can_be_switched_off(console_service: Service) -> None:
    settings = replace(console_service.settings, console=False, workers=None)
    other = Service(settings, console_registry(Gates()))
    await other.start()
    try:
        assert other.http is not None
        async with aiohttp.ClientSession(f"http://127.0.0.1:{other.http.port}") as http:
            response = await http.get("/console/")
            assert response.status == 404
            assert response.content_type == "application/json"
    finally:
        await other.stop(1.0)


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({"Content-Type": "application/x-www-form-urlencoded; charset=foo"}, b"a=b", 400),
        ({"Content-Type": "application/x-www-form-urlencoded"}, b"csrf_token=\xff\xfe", 400),
        ({"Content-Type": "multipart/form-data"}, b"x", 415),
        ({"Content-Type": "application/json"}, b"{}", 415),
        (
            {"Content-Type": "application/x-www-form-urlencoded", "Content-Encoding": "gzip"},
            b"not gzip",
            400,
        ),
        ({"Content-Type": "application/x-www-form-urlencoded"}, b"a=" + b"x" * 20_000, 413),
    ],
)
async def test_bad_form_bodies_get_a_4xx_page(
    base_url: str, headers: dict[str, str], body: bytes, status: int
) -> None:
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(base_url, connector=connector) as http:
        await http.get("/console/")  # the CSRF cookie
        for path in ("/console/login", "/console/operations/AAAAAAAAAAAAAAAAAAAAAA/cancel"):
            response = await http.post(path, data=body, headers=headers)
            assert response.status == status, (path, await response.text())
            assert response.content_type == "text/html"
