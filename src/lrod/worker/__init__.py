"""The worker pool: claims jobs, runs their handlers, records the outcome."""

from lrod.worker.pool import WorkerPool, WorkerSettings

__all__ = ["WorkerPool", "WorkerSettings"]
