"""The webhook tests' receiver: an HTTP server of their own on 127.0.0.1
(tests/webhooks/receiver.py), one per test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.webhooks.receiver import Receiver


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    running = Receiver()
    await running.start()
    try:
        yield running
    finally:
        await running.stop()
