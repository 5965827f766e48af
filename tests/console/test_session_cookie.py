"""The console's cookies as a real headless Chromium stores them
(docs/security.md, "The console's session cookie"): the session cookie
carries the bearer token, HttpOnly, SameSite=Strict, only under /console,
for the browser session only, and Secure whenever the console is served over
TLS; the CSRF cookie likewise; signing out removes the session."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
import pytest_asyncio
import trustme
from playwright.async_api import Browser, expect

from lrod.app import Service
from lrod.auth.tokens import new_token, token_digest
from lrod.console.access import CSRF_COOKIE, SESSION_COOKIE
from lrod.settings import SecuritySettings
from tests.console.conftest import console_registry, console_settings
from tests.jobs import Gates

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]


@dataclass(frozen=True)
class Console:
    url: str
    token: str


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["https", "http"])
async def console(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Console]:
    folder = tmp_path_factory.mktemp("console-cookie")
    token = new_token()
    (folder / "tokens.toml").write_text(
        f'[[principal]]\nname = "alice"\ntoken_sha256 = "{token_digest(token)}"\nroles = []\n'
    )
    security = SecuritySettings(auth_token_file=str(folder / "tokens.toml"))
    if request.param == "https":
        cert = trustme.CA().issue_cert("127.0.0.1")
        cert.cert_chain_pems[0].write_to_path(folder / "server.pem")
        cert.private_key_pem.write_to_path(folder / "server.key")
        security = replace(
            security, tls_cert=str(folder / "server.pem"), tls_key=str(folder / "server.key")
        )
    settings = replace(console_settings(f"sqlite:///{folder / 'lrod.db'}"), security=security)
    gates = Gates()
    service = Service(settings, console_registry(gates))
    await service.start()
    assert service.http is not None
    try:
        yield Console(f"{request.param}://127.0.0.1:{service.http.port}", token)
    finally:
        await service.stop(1.0)


async def test_the_session_cookie_holds_the_token_with_its_flags(
    browser: Browser, console: Console
) -> None:
    context = await browser.new_context(ignore_https_errors=True)
    context.set_default_timeout(15_000)
    try:
        page = await context.new_page()
        await page.goto(f"{console.url}/console/")
        await expect(page).to_have_url(f"{console.url}/console/login")
        await page.get_by_label("Access token").fill(console.token)
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.get_by_text("Signed in as alice")).to_be_visible()

        cookies: dict[str, Any] = {c["name"]: c for c in await context.cookies()}
        assert cookies.keys() == {SESSION_COOKIE, CSRF_COOKIE}
        tls = console.url.startswith("https:")
        for cookie in cookies.values():
            assert cookie["httpOnly"] is True  # no script on any page reads it
            assert cookie["sameSite"] == "Strict"  # never sent by another site's request
            assert cookie["path"] == "/console"  # not sent to the API's routes
            assert cookie["expires"] == -1  # the browser session only
            assert cookie["secure"] is tls  # over TLS, never sent in clear
        assert cookies[SESSION_COOKIE]["value"] == console.token
        assert await page.evaluate("document.cookie") == ""

        await page.get_by_role("button", name="Sign out").click()
        await expect(page).to_have_url(f"{console.url}/console/login?notice=signed-out")
        assert SESSION_COOKIE not in {c["name"] for c in await context.cookies()}
    finally:
        await context.close()
