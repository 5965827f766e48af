"""Celery's side of the same no-op job, on a Redis broker named by
BENCH_REDIS_URL. Its worker is Celery's own command:
`celery -A bench.celery_app:app worker`.

The task does nothing but count itself done in Redis (one INCR): without a
result backend Celery keeps no record of finished tasks to count.
"""

from __future__ import annotations

import os
from typing import Any

import redis
from celery import Celery  # type: ignore[import-untyped]
from celery.signals import worker_ready  # type: ignore[import-untyped]

NOOP = "noop"
DONE = "bench:done"
READY = "bench:ready"

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")

app = Celery("bench", broker=URL)
app.conf.update(
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    worker_send_task_events=False,
)
counter = redis.Redis.from_url(URL)


@app.task(name=NOOP)  # type: ignore[untyped-decorator]
def noop() -> None:
    counter.incr(DONE)


@worker_ready.connect  # type: ignore[untyped-decorator]
def _ready(**_: Any) -> None:
    counter.set(READY, 1)
