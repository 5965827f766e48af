"""The console under test: one real lrod Service per module (SQLite, workers,
the HTTP door with the console), and a real headless Chromium driven by
Playwright. With CI set, a missing browser fails the run instead of skipping.

Screenshots go to $LROD_SCREENSHOTS (default build/screenshots);
`make console-screenshots` writes the README's into docs/console/.
"""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from google.protobuf import wrappers_pb2
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from lrod import JobContext, PermanentJobError, Registry
from lrod.app import Service, Settings
from lrod.manager import ManagerSettings
from lrod.settings import WebhookSettings
from lrod.worker import WorkerSettings
from lrod.worker.presence import PresenceSettings
from tests.jobs import Gates, build_registry

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("LROD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def console_registry(gates: Gates) -> Registry:
    registry = build_registry(gates)

    @registry.job("test.refuse", input=wrappers_pb2.StringValue, output=wrappers_pb2.StringValue)
    async def refuse(ctx: JobContext, text: wrappers_pb2.StringValue) -> wrappers_pb2.StringValue:
        """Fails for good with the input as its public message."""
        raise PermanentJobError(text.value, reason="REFUSED")

    return registry


@pytest.fixture(scope="module")
def screenshots() -> Path:
    folder = Path(os.environ.get("LROD_SCREENSHOTS", ROOT / "build" / "screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def chromium() -> str:
    if not (shutil.which(CHROMIUM) or Path(CHROMIUM).exists()):
        message = f"no Chromium at {CHROMIUM} (make test installs Debian's chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture(scope="module")
def module_gates() -> Gates:
    return Gates()


def console_settings(database_url: str) -> Settings:
    return Settings(
        address="127.0.0.1:0",
        database_url=database_url,
        workers=WorkerSettings(
            concurrency=4,
            lease=timedelta(seconds=5),
            poll_interval=0.2,
            progress_interval=0.05,
            cancel_grace=0.5,
            drain_grace=1.0,
        ),
        manager=ManagerSettings(max_wait=2.0),
        http_address="127.0.0.1:0",
        presence=PresenceSettings(interval=0.5),
        # Completion webhooks to a receiver of the tests' own on 127.0.0.1.
        webhooks=WebhookSettings(
            secrets="whsec_" + base64.b64encode(b"the console tests' own secret").decode(),
            schemes="https,http",
            allow="127.0.0.1",
            schedule="0.2",
            timeout=1.0,
            poll_interval=0.1,
        ),
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def console_service(
    module_gates: Gates, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Service]:
    folder = tmp_path_factory.mktemp("console")
    running = Service(
        console_settings(f"sqlite:///{folder / 'lrod.db'}"), console_registry(module_gates)
    )
    await running.start()
    try:
        yield running
    finally:
        for gate in module_gates.gates.values():
            gate.set()
        await running.stop(1.0)


@pytest.fixture(scope="module")
def base_url(console_service: Service) -> str:
    assert console_service.http is not None
    return f"http://127.0.0.1:{console_service.http.port}"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser(chromium: str) -> AsyncIterator[Browser]:
    """Debian's Chromium (Playwright cannot download its own here); launch()
    gives it a fresh temporary profile (user-data-dir) every time."""
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest_asyncio.fixture(loop_scope="module")
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    """A fresh browser context (cookies of its own) per test."""
    opened = await browser.new_context(viewport={"width": 1280, "height": 900})
    opened.set_default_timeout(15_000)
    try:
        yield opened
    finally:
        await opened.close()


@pytest_asyncio.fixture(loop_scope="module")
async def page(context: BrowserContext) -> Page:
    return await context.new_page()
