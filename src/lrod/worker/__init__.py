"""The worker pool: claims jobs, runs their handlers, records the outcome."""

from lrod.settings import WorkerSettings
from lrod.worker.pool import WorkerPool

__all__ = ["WorkerPool", "WorkerSettings"]
