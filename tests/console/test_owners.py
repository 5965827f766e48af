"""Owners through the console's access seam (`Access` with a token check), in
a real headless Chromium: sign-in with a token kept in a session cookie, two
owners who never see each other's operations nor the internal error text,
CSRF tokens bound to the session, sign-out.

The token check here is a table of the test's own (authentication proper
plugs into the same seam, lrod.console.access)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from google.protobuf import wrappers_pb2
from playwright.async_api import Browser, BrowserContext, Page, expect

from lrod.app import Service
from lrod.console.access import Access, Viewer
from lrod.domain.names import new_operation_id
from lrod.domain.operation import Payload
from lrod.domain.submission import NewJob
from lrod.http.server import HttpFrontDoor

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

TOKENS = {
    "alice-token": Viewer("alice"),
    "bob-token": Viewer("bob"),
}


@dataclass(frozen=True)
class Site:
    url: str
    service: Service


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def site(console_service: Service) -> AsyncIterator[Site]:
    async def check(token: str) -> Viewer | None:
        found = TOKENS.get(token)
        return None if found is None else Viewer(found.owner, found.admin, signed_in=True)

    door = HttpFrontDoor(
        console_service.manager, "127.0.0.1:0", console=True, console_access=Access(check)
    )
    await door.start()
    try:
        yield Site(f"http://127.0.0.1:{door.port}", console_service)
    finally:
        await door.stop()


async def submit_as(site: Site, owner: str, job_type: str, text: str) -> str:
    manager = site.service.manager
    job_type_ = manager.registry.get(job_type)
    assert job_type_ is not None
    now = manager.clock()
    job = NewJob(
        id=new_operation_id(),
        owner=owner,
        job_type=job_type,
        input=Payload(
            job_type_.input_type_url, wrappers_pb2.StringValue(value=text).SerializeToString()
        ),
        max_attempts=job_type_.max_attempts,
        create_time=now,
        run_after=now,
    )
    op = await manager.submit(job)
    async with asyncio.timeout(20):
        while not (await manager.store.get(op.id, owner, manager.clock())).done:
            await asyncio.sleep(0.05)
    return op.id


@pytest_asyncio.fixture(loop_scope="module")
async def fresh(browser: Browser) -> AsyncIterator[Any]:
    opened: list[BrowserContext] = []

    async def open_page() -> Page:
        context = await browser.new_context()
        context.set_default_timeout(15_000)
        opened.append(context)
        return await context.new_page()

    yield open_page
    for context in opened:
        await context.close()


async def sign_in(page: Page, site: Site, token: str, who: str) -> None:
    await page.goto(f"{site.url}/console/")
    await expect(page).to_have_url(f"{site.url}/console/login")
    await page.get_by_label("Access token").fill(token)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_text(f"Signed in as {who}")).to_be_visible()


async def test_owners_see_only_their_own(fresh: Any, site: Site, screenshots: Path) -> None:
    alices = await submit_as(site, "alice", "test.crash", "<i>alice's secret</i>")
    bobs = await submit_as(site, "bob", "test.refuse", "bob's")

    alice = await fresh()
    await alice.goto(f"{site.url}/console/operations")
    await expect(alice).to_have_url(f"{site.url}/console/login")
    await alice.get_by_label("Access token").fill("not-a-token")
    await alice.get_by_role("button", name="Sign in").click()
    await expect(alice.get_by_role("alert")).to_have_text("That token was not accepted.")
    await alice.screenshot(path=str(screenshots / "login.png"), full_page=True)
    await sign_in(alice, site, "alice-token", "alice")
    await alice.goto(f"{site.url}/console/operations")
    rows = alice.locator("#operations tbody")
    await expect(rows).to_contain_text(alices)
    await expect(rows).not_to_contain_text(bobs)
    other = await alice.goto(f"{site.url}/console/operations/{bobs}")
    assert other is not None
    assert other.status == 404  # like a missing one
    assert (await alice.request.get(f"{site.url}/console/operations/{bobs}/events")).status == 404
    await alice.goto(f"{site.url}/console/operations/{alices}")
    await expect(alice.locator("#attempts")).to_contain_text("HANDLER_ERROR")
    await expect(alice.locator("main")).not_to_contain_text("internal detail")


async def test_csrf_tokens_are_bound_to_the_session_and_sign_out(fresh: Any, site: Site) -> None:
    name = await submit_as(site, "alice", "test.refuse", "keep me")
    bob = await fresh()
    await sign_in(bob, site, "bob-token", "bob")
    bobs_token = await bob.locator("input[name=csrf_token]").first.get_attribute("value")

    alice = await fresh()
    await sign_in(alice, site, "alice-token", "alice")
    await alice.goto(f"{site.url}/console/operations/{name}/delete")
    await alice.locator("main input[name=csrf_token]").evaluate(
        "(node, token) => { node.value = token; }", bobs_token
    )
    async with alice.expect_navigation() as posted:
        await alice.get_by_role("button", name="Delete the operation").click()
    response = await posted.value
    assert response is not None
    assert response.status == 403
    kept = await alice.goto(f"{site.url}/console/operations/{name}")
    assert kept is not None
    assert kept.status == 200

    await alice.get_by_role("button", name="Sign out").click()
    await expect(alice.get_by_role("status")).to_have_text("Signed out.")
    await alice.goto(f"{site.url}/console/")
    await expect(alice).to_have_url(f"{site.url}/console/login")
