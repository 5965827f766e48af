"""For `lrod worker --jobs tests.webhooks.crashing:registry`: the test jobs,
in a process that kills itself (SIGKILL) right after it commits the first
terminal state that carries a webhook, before any POST can be made. Fault
injection for the outbox test: the kill happens in the store's after-commit
announcement, where the dispatcher would be woken."""

from __future__ import annotations

import os
import signal
from typing import Any

from lrod.jobs.registry import Registry
from lrod.store.changes import Changes
from lrod.store.sql_store import SqlStore
from tests.jobs import subprocess_registry

_announce = SqlStore._announce


def _announce_then_die(self: SqlStore, changes: Changes) -> Any:
    if any(t.operation.done and t.operation.notify_url for t in changes.transitions):
        os.kill(os.getpid(), signal.SIGKILL)
    return _announce(self, changes)


def registry() -> Registry:
    SqlStore._announce = _announce_then_die  # type: ignore[method-assign]
    return subprocess_registry()
