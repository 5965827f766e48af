"""The console with authentication on (a real token file through the one
seam), in a real headless Chromium: sign-in with a token (session cookie),
owners isolated from each other, an admin seeing every owner and the
internal error text, a read-only admin refused a cancel, CSRF tokens bound
to the session, the bearer header, sign-out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page, expect

from lrod.app import Service
from lrod.auth.tokens import new_token, token_digest
from lrod.settings import SecuritySettings
from tests.console.conftest import console_registry, console_settings
from tests.jobs import Gates

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

ROLES = {"alice": [], "bob": [], "ops": ["admin"], "auditor": ["admin", "readonly"]}


@dataclass(frozen=True)
class Site:
    url: str
    tokens: dict[str, str]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def site(
    tmp_path_factory: pytest.TempPathFactory, module_gates: Gates
) -> AsyncIterator[Site]:
    folder = tmp_path_factory.mktemp("console-auth")
    tokens = {name: new_token() for name in ROLES}
    lines = []
    for name, roles in ROLES.items():
        quoted = ", ".join(f'"{r}"' for r in roles)
        lines += [
            "[[principal]]",
            f'name = "{name}"',
            f'token_sha256 = "{token_digest(tokens[name])}"',
            f"roles = [{quoted}]",
            "",
        ]
    (folder / "tokens.toml").write_text("\n".join(lines))
    settings = replace(
        console_settings(f"sqlite:///{folder / 'lrod.db'}"),
        security=SecuritySettings(auth_token_file=str(folder / "tokens.toml")),
    )
    gates = module_gates
    service = Service(settings, console_registry(gates))
    await service.start()
    assert service.http is not None
    try:
        yield Site(f"http://127.0.0.1:{service.http.port}", tokens)
    finally:
        for gate in gates.gates.values():
            gate.set()
        await service.stop(1.0)


async def submit_as(site: Site, who: str, job_type: str, value: str, wait: bool = True) -> str:
    request = {
        "jobType": job_type,
        "input": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": value},
    }
    headers = {"Authorization": f"Bearer {site.tokens[who]}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        response = await http.post(f"{site.url}/v1/operations:submit", json=request)
        assert response.status == 202, await response.text()
        name: str = (await response.json())["name"]
        async with asyncio.timeout(20):
            while wait and not (
                await (await http.get(f"{site.url}/v1/{name}?view=operation")).json()
            ).get("done"):
                await asyncio.sleep(0.05)
    return name.removeprefix("operations/")


@pytest_asyncio.fixture(loop_scope="module")
async def fresh(browser: Browser) -> AsyncIterator[Any]:
    opened: list[BrowserContext] = []

    async def open_page(**options: Any) -> Page:
        context = await browser.new_context(**options)
        context.set_default_timeout(15_000)
        opened.append(context)
        return await context.new_page()

    yield open_page
    for context in opened:
        await context.close()


async def sign_in(page: Page, site: Site, who: str) -> None:
    await page.goto(f"{site.url}/console/")
    await expect(page).to_have_url(f"{site.url}/console/login")
    await page.get_by_label("Access token").fill(site.tokens[who])
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_text(f"Signed in as {who}")).to_be_visible()


async def test_sign_in_and_owners_see_only_their_own(
    fresh: Any, site: Site, screenshots: Path
) -> None:
    mine = await submit_as(site, "alice", "test.refuse", "alice's")
    theirs = await submit_as(site, "bob", "test.refuse", "bob's")
    page = await fresh()
    await page.goto(f"{site.url}/console/operations")
    await expect(page).to_have_url(f"{site.url}/console/login")
    await page.get_by_label("Access token").fill("lrod_not-a-token")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_have_text("That token was not accepted.")
    await shot(page, screenshots, "login")

    await sign_in(page, site, "alice")
    await page.goto(f"{site.url}/console/operations")
    rows = page.locator("#operations tbody")
    await expect(rows).to_contain_text(mine)
    await expect(rows).not_to_contain_text(theirs)
    # Another owner's operation is indistinguishable from a missing one.
    other = await page.goto(f"{site.url}/console/operations/{theirs}")
    assert other is not None
    assert other.status == 404
    stream = await page.request.get(f"{site.url}/console/operations/{theirs}/events")
    assert stream.status == 404
    await page.goto(f"{site.url}/console/")
    await expect(page.locator("table.numbers tfoot")).to_contain_text("1")  # alice's one
    # Workers' hosts and pids are for admins; an owner sees the counts.
    await expect(page.locator("#worker-summary")).to_contain_text("Workers alive: 1,")


async def test_an_admin_sees_every_owner_and_the_internal_error(
    fresh: Any, site: Site, screenshots: Path
) -> None:
    crashed = await submit_as(site, "alice", "test.crash", "<i>secret</i>")
    bobs = await submit_as(site, "bob", "test.refuse", "bob again")

    alice = await fresh()
    await sign_in(alice, site, "alice")
    await alice.goto(f"{site.url}/console/operations/{crashed}")
    await expect(alice.locator("#attempts")).to_contain_text("HANDLER_ERROR")
    await expect(alice.locator("main")).not_to_contain_text("internal detail")

    ops = await fresh()
    await sign_in(ops, site, "ops")
    await expect(ops.locator("header .badge")).to_have_text("admin")
    await expect(ops.locator("#workers ~ div table tbody th")).to_have_count(1)
    await ops.goto(f"{site.url}/console/operations")
    table = ops.locator("#operations")
    await expect(table).to_contain_text(crashed)
    await expect(table).to_contain_text(bobs)
    await expect(table.locator("thead")).to_contain_text("Owner")
    await ops.goto(f"{site.url}/console/operations/{crashed}")
    await ops.get_by_text("Internal error of attempt 1 (admins only)").click()
    traceback = ops.locator(".traceback")
    await expect(traceback).to_contain_text("ValueError: internal detail: <i>secret</i>")
    assert await ops.locator("main i").count() == 0
    await shot(ops, screenshots, "operation-admin")


async def test_a_read_only_admin_may_look_but_not_cancel(fresh: Any, site: Site) -> None:
    name = await submit_as(site, "bob", "test.block", "look-only", wait=False)
    page = await fresh()
    await sign_in(page, site, "auditor")
    await page.goto(f"{site.url}/console/operations/{name}")
    await expect(page.locator("#state")).to_have_text("RUNNING")
    await expect(page.get_by_role("link", name="Delete…")).to_have_count(0)  # bob's
    await page.get_by_role("link", name="Cancel…").click()
    await page.get_by_role("button", name="Cancel the operation").click()
    await expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    await page.goto(f"{site.url}/console/operations/{name}")
    await expect(page.locator("#state")).to_have_text("RUNNING")


async def test_csrf_tokens_are_bound_to_the_session(fresh: Any, site: Site) -> None:
    name = await submit_as(site, "alice", "test.refuse", "keep me")
    bob = await fresh()
    await sign_in(bob, site, "bob")
    bobs_token = await bob.locator("input[name=csrf_token]").first.get_attribute("value")

    alice = await fresh()
    await sign_in(alice, site, "alice")
    await alice.goto(f"{site.url}/console/operations/{name}/delete")
    # Bob's valid token of his own session, planted in Alice's form, is refused.
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


async def test_the_bearer_header_and_signing_out(fresh: Any, site: Site) -> None:
    name = await submit_as(site, "alice", "test.refuse", "by header")
    headed = await fresh(extra_http_headers={"Authorization": f"Bearer {site.tokens['alice']}"})
    page = await headed.goto(f"{site.url}/console/operations/{name}")
    assert page is not None
    assert page.status == 200

    browser = await fresh()
    await sign_in(browser, site, "alice")
    await browser.get_by_role("button", name="Sign out").click()
    await expect(browser.get_by_role("status")).to_have_text("Signed out.")
    await browser.goto(f"{site.url}/console/")
    await expect(browser).to_have_url(f"{site.url}/console/login")


async def shot(page: Page, folder: Path, name: str) -> None:
    await page.screenshot(path=str(folder / f"{name}.png"), full_page=True)
