"""The console in a real headless Chromium against a real lrod Service:
overview, the filtered list, an operation's live progress to done without a
reload, cancelling a running job, a failed job's attempts, values shown as
text (XSS), CSRF refusal, reading without JavaScript, a narrow window and the
keyboard. Each page's screenshot is saved."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from playwright.async_api import Browser, BrowserContext, Page, expect

from lrod.app import Service
from tests.jobs import Gates

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

XSS = '<script>window.xss = 1</script><img src=x onerror="window.xss = 2"><b>bold</b>'


async def submit(
    base_url: str,
    job_type: str,
    body: dict[str, Any],
    labels: dict[str, str] | None = None,
    **fields: Any,
) -> str:
    type_url = {
        "examples.sleep": "lrod.examples.v1.SleepJob",
        "examples.flaky": "lrod.examples.v1.FlakyJob",
    }.get(job_type, "google.protobuf.StringValue")
    request = {
        "jobType": job_type,
        "input": {"@type": f"type.googleapis.com/{type_url}", **body},
        "labels": labels or {},
        **fields,
    }
    async with aiohttp.ClientSession() as http:
        response = await http.post(f"{base_url}/v1/operations:submit", json=request)
        assert response.status == 202, await response.text()
        name: str = (await response.json())["name"]
    return name.removeprefix("operations/")


async def wait_done(base_url: str, op_id: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, asyncio.timeout(20):
        while True:
            response = await http.get(f"{base_url}/v1/operations/{op_id}?view=operation")
            body: dict[str, Any] = await response.json()
            if body.get("done"):
                return body
            await asyncio.sleep(0.05)


async def shot(page: Page, folder: Path, name: str) -> None:
    await page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


async def test_overview_counts_per_job_type_and_lists_the_workers(
    page: Page, base_url: str, console_service: Service, screenshots: Path
) -> None:
    done = await submit(base_url, "examples.sleep", {"duration": "0.1s", "steps": 2})
    failed = await submit(base_url, "test.refuse", {"value": "no such customer"})
    await wait_done(base_url, done)
    await wait_done(base_url, failed)

    await page.goto(f"{base_url}/console")  # redirected to /console/
    await expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    sleep_row = page.locator("tbody tr", has=page.get_by_role("link", name="examples.sleep"))
    await expect(sleep_row).to_have_count(1)
    refuse_row = page.locator("tbody tr", has=page.get_by_role("link", name="test.refuse"))
    cells = refuse_row.locator("td")
    await expect(cells.nth(3)).to_have_text("1")  # failed
    await expect(cells.nth(7)).to_have_text("100%")  # failure rate
    worker_id = console_service.pool.settings.worker_id if console_service.pool else ""
    await expect(page.locator("#workers ~ div table")).to_contain_text(worker_id)
    await shot(page, screenshots, "overview")

    # Each count links to the list, filtered.
    await cells.nth(3).get_by_role("link").click()
    await expect(page).to_have_url(
        f"{base_url}/console/operations?job_type=test.refuse&state=FAILED"
    )
    await expect(page.locator("#operations tbody tr")).to_contain_text(failed)


async def test_filter_the_list_by_pickers_labels_and_aip160(
    page: Page, base_url: str, screenshots: Path
) -> None:
    ours = await submit(
        base_url, "examples.sleep", {"duration": "0.1s"}, {"team": "finance", "env": "prod"}
    )
    other = await submit(base_url, "examples.sleep", {"duration": "0.1s"}, {"team": "ops"})
    await wait_done(base_url, ours)
    await wait_done(base_url, other)

    await page.goto(f"{base_url}/console/operations")
    await page.get_by_label("Job type").select_option("examples.sleep")
    await page.get_by_label("State").select_option("SUCCEEDED")
    await page.get_by_label("Labels").fill("team=finance")
    await page.get_by_role("button", name="Apply").click()
    rows = page.locator("#operations tbody tr")
    await expect(rows).to_have_count(1)
    await expect(rows).to_contain_text(ours)
    await expect(rows).to_contain_text("team=finance")
    await shot(page, screenshots, "operations")

    # The typed filter goes to the same parser as ListOperations.
    await page.goto(f"{base_url}/console/operations")
    await page.get_by_role("textbox", name="Filter").fill(
        'labels.team = "ops" AND metadata.state = SUCCEEDED'
    )
    await page.get_by_role("button", name="Apply").click()
    await expect(rows).to_have_count(1)
    await expect(rows).to_contain_text(other)

    # ...and what it refuses is said on the page, as text.
    await page.get_by_role("textbox", name="Filter").fill(f"{XSS} = 1")
    await page.get_by_role("button", name="Apply").click()
    await expect(page.get_by_role("alert")).to_contain_text("The filter was not accepted")
    assert await page.evaluate("window.xss") is None

    # Sorted by create time, oldest first, with keyset pages of 25.
    await page.goto(f"{base_url}/console/operations?order=oldest&page_size=25")
    times = await page.locator("#operations tbody time").evaluate_all(
        "nodes => nodes.map(n => n.getAttribute('datetime'))"
    )
    assert times == sorted(times)


async def test_progress_moves_to_done_without_a_reload(
    page: Page, base_url: str, screenshots: Path
) -> None:
    op_id = await submit(base_url, "examples.sleep", {"duration": "2.4s", "steps": 8})
    await page.goto(f"{base_url}/console/operations/{op_id}")
    await page.evaluate("window.notReloaded = true")
    bar = page.locator("#bar")
    seen: list[int] = []
    taken = False
    async with asyncio.timeout(20):
        while True:
            state = await page.locator("#state").inner_text()
            value = int(await bar.evaluate("b => b.hasAttribute('value') ? b.value : -1"))
            seen.append(value)
            if 0 < value < 100 and not taken:
                await shot(page, screenshots, "operation-running")
                taken = True
            if state == "SUCCEEDED":
                break
            await asyncio.sleep(0.05)
    assert any(0 < v < 100 for v in seen), seen  # it moved while running
    await expect(bar).to_have_js_property("value", 100)
    await expect(page.locator("#response")).to_contain_text('"stepsDone": 8')
    await expect(page.locator("#cancel-link")).to_be_hidden()
    assert await page.evaluate("window.notReloaded") is True
    await shot(page, screenshots, "operation-succeeded")


async def test_cancel_a_running_job_from_its_page(
    page: Page, base_url: str, module_gates: Gates, screenshots: Path
) -> None:
    op_id = await submit(base_url, "test.block", {"value": "console-cancel"})
    async with asyncio.timeout(10):
        await module_gates.started_event("console-cancel").wait()
    await page.goto(f"{base_url}/console/operations/{op_id}")
    await expect(page.locator("#state")).to_have_text("RUNNING")
    await page.get_by_role("link", name="Cancel…").click()
    await expect(page.get_by_role("heading", name="Cancel this operation?")).to_be_visible()
    await shot(page, screenshots, "confirm-cancel")
    await page.get_by_role("button", name="Cancel the operation").click()
    await expect(page.get_by_role("status")).to_have_text("Cancel requested.")
    await expect(page.locator("#state")).to_have_text("CANCELLED")
    await expect(page.locator("#error")).to_contain_text("OPERATION_CANCELLED")
    assert "console-cancel" in module_gates.saw_cancel


async def test_a_failed_job_shows_its_attempts_and_values_as_text(
    page: Page, base_url: str, screenshots: Path
) -> None:
    op_id = await submit(base_url, "test.refuse", {"value": XSS})
    crashed = await submit(base_url, "test.crash", {"value": XSS})
    await wait_done(base_url, op_id)
    await wait_done(base_url, crashed)

    await page.goto(f"{base_url}/console/operations/{op_id}")
    await expect(page.locator("#state")).to_have_text("FAILED")
    attempts = page.locator("#attempts tbody tr")
    await expect(attempts).to_have_count(1)
    await expect(attempts).to_contain_text("FAILED")
    await expect(attempts).to_contain_text("REFUSED")
    # The HTML in the public message is shown as text, never run or parsed.
    await expect(attempts.locator("td").nth(4)).to_contain_text(XSS)
    await expect(page.locator("#error")).to_contain_text("<script>window.xss = 1</script>")
    assert await page.locator("main img, main script, main b").count() == 0
    assert await page.evaluate("window.xss") is None
    await shot(page, screenshots, "operation-failed")

    # The internal text of an unexpected exception is for admins only.
    await page.goto(f"{base_url}/console/operations/{crashed}")
    await expect(page.locator("#attempts")).to_contain_text("HANDLER_ERROR")
    await expect(page.locator("main")).not_to_contain_text("internal detail")


async def test_a_form_posted_from_another_site_is_refused(
    page: Page, base_url: str, module_gates: Gates
) -> None:
    op_id = await submit(base_url, "test.block", {"value": "console-csrf"})
    async with asyncio.timeout(10):
        await module_gates.started_event("console-csrf").wait()
    # The browser has the console's cookies: it read a page of it.
    await page.goto(f"{base_url}/console/operations/{op_id}")

    attacker = web.Application()
    form = (
        f'<form id="f" method="post" action="{base_url}/console/operations/{op_id}/cancel">'
        '<input name="csrf_token" value="guessed"></form>'
        "<script>document.getElementById('f').submit()</script>"
    )

    async def evil(_request: web.Request) -> web.Response:
        return web.Response(text=form, content_type="text/html")

    attacker.router.add_get("/", evil)
    runner = web.AppRunner(attacker)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with page.expect_navigation(url=f"**/operations/{op_id}/cancel") as posted:
            await page.goto(f"http://127.0.0.1:{port}/")
        response = await posted.value
        assert response is not None
        assert response.status == 403
        await expect(page.get_by_role("heading")).to_contain_text("came from another site")
    finally:
        await runner.cleanup()

    # A form of the console's own without its token is refused too.
    async with aiohttp.ClientSession() as http:
        response = await http.post(f"{base_url}/console/operations/{op_id}/cancel", data={})
        assert response.status == 403
    await page.goto(f"{base_url}/console/operations/{op_id}")
    await expect(page.locator("#state")).to_have_text("RUNNING")
    module_gates.gate("console-csrf").set()


async def test_pages_read_without_javascript_and_in_a_narrow_window(
    browser: Browser, base_url: str, screenshots: Path
) -> None:
    op_id = await submit(base_url, "examples.sleep", {"duration": "0.1s"}, {"team": "finance"})
    await wait_done(base_url, op_id)
    context = await browser.new_context(
        java_script_enabled=False, viewport={"width": 375, "height": 740}
    )
    try:
        page = await context.new_page()
        for path, name in [
            ("/console/", "overview-narrow"),
            ("/console/operations", "operations-narrow"),
            (f"/console/operations/{op_id}", "operation-narrow"),
        ]:
            await page.goto(base_url + path)
            await expect(page.locator("main h1")).to_be_visible()
            # Nothing but the tables' own scroll areas is wider than the window.
            overflow = await page.evaluate(
                "document.documentElement.scrollWidth - window.innerWidth"
            )
            assert overflow <= 0, (path, overflow)
            await shot(page, screenshots, name)
        await expect(page.locator("#state")).to_have_text("SUCCEEDED")
        await expect(page.locator("#response")).to_contain_text("stepsDone")
    finally:
        await context.close()


async def test_keyboard_and_labels(page: Page, base_url: str) -> None:
    await page.goto(f"{base_url}/console/operations")
    await page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    await expect(skip).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator("main")).to_be_focused()
    unlabelled = await page.locator("input:not([type=hidden]), select").evaluate_all(
        "nodes => nodes.filter(n => n.labels.length === 0).map(n => n.name)"
    )
    assert unlabelled == []
    # The filter form works from the keyboard alone.
    await page.get_by_label("Labels").focus()
    await page.keyboard.type("team=nobody")
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(re.compile(r".*[?&]labels=team%3Dnobody(&|$)"))
    await expect(page.locator("#operations tbody")).to_contain_text("No operations match.")


async def test_security_headers(context: BrowserContext, base_url: str) -> None:
    response = await context.request.get(f"{base_url}/console/")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert response.headers["x-frame-options"] == "DENY"


async def test_submit_again_then_delete_with_a_confirmation(page: Page, base_url: str) -> None:
    original = await submit(
        base_url, "examples.sleep", {"duration": "0.1s", "steps": 1}, {"team": "again"}
    )
    await wait_done(base_url, original)
    await page.goto(f"{base_url}/console/operations/{original}")
    await page.get_by_role("button", name="Submit again").click()
    await expect(page.get_by_role("status")).to_have_text(
        "Submitted again: this is the new operation."
    )
    copy = page.url.rsplit("/", 1)[1].split("?")[0]
    assert copy != original
    await expect(page.locator("#labels")).to_have_text("team=again")
    await expect(page.locator("main")).to_contain_text('"duration": "0.100s"')
    await expect(page.locator("#state")).to_have_text("SUCCEEDED")

    await page.goto(f"{base_url}/console/operations/{original}")
    await page.get_by_role("link", name="Delete…").click()
    await expect(page.get_by_role("heading", name="Delete this operation?")).to_be_visible()
    await page.get_by_role("button", name="Delete the operation").click()
    await expect(page.get_by_role("status")).to_have_text("The operation was deleted.")
    gone = await page.goto(f"{base_url}/console/operations/{original}")
    assert gone is not None
    assert gone.status == 404
    await expect(page.get_by_role("heading", name="Not found")).to_be_visible()


async def test_the_webhook_delivery_is_shown_on_the_operation_page(
    page: Page, base_url: str, screenshots: Path
) -> None:
    calls: list[str] = []

    async def receive(request: web.Request) -> web.Response:
        calls.append(request.headers.get("webhook-id", ""))
        return web.Response(status=204)

    receiver = web.Application()
    receiver.router.add_post("/hook", receive)
    runner = web.AppRunner(receiver)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    try:
        op_id = await submit(
            base_url, "examples.sleep", {"duration": "0.1s"}, notification={"url": url}
        )
        await wait_done(base_url, op_id)
        await page.goto(f"{base_url}/console/operations/{op_id}")
        webhook = page.locator("#webhook")
        await expect(webhook).to_contain_text(url)
        async with asyncio.timeout(15):
            while "DELIVERED" not in await webhook.inner_text():
                await page.reload()
                await asyncio.sleep(0.1)
        await expect(webhook).to_contain_text("204")
        assert calls == [f"msg_{op_id}"]
        await shot(page, screenshots, "operation-webhook")
        # Submitted again by its owner, the copy notifies the same target.
        await page.get_by_role("button", name="Submit again").click()
        await expect(page.get_by_role("status")).to_contain_text("Submitted again")
        copy = page.url.rsplit("/", 1)[1].split("?")[0]
        await wait_done(base_url, copy)
        async with asyncio.timeout(15):
            while len(calls) < 2:
                await asyncio.sleep(0.05)
        assert calls == [f"msg_{op_id}", f"msg_{copy}"]
    finally:
        await runner.cleanup()
