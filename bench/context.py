"""What every part of the run shares: the plan, a scratch folder, the
PostgreSQL cluster (or why there is none), and how to start lrod."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.infra import pg_database, sqlite_database
from bench.plan import Plan
from bench.procs import Child, child
from bench.profile import Profiler
from lrod.testing.postgres import ThrowawayCluster

SQLITE = "sqlite"
POSTGRESQL = "postgresql"
DATABASE_NAMES = {SQLITE: "SQLite", POSTGRESQL: "PostgreSQL"}


@dataclass
class Context:
    plan: Plan
    work: Path
    cluster: ThrowawayCluster | None
    no_postgres: str = ""
    profiler: Profiler = field(default_factory=lambda: Profiler(Path("/nonexistent"), False))

    @property
    def quick(self) -> bool:
        return self.plan.name == "quick"

    def command(self, part: str) -> str:
        """The command that measures `part` alone."""
        return f"python -m bench{' --quick' if self.quick else ''} --only {part}"

    def log(self, name: str) -> Path:
        return self.work / "logs" / f"{name}.log"

    @property
    def databases(self) -> list[str]:
        return [SQLITE, POSTGRESQL] if self.cluster is not None else [SQLITE]

    @contextlib.asynccontextmanager
    async def database(
        self, kind: str, prefix: str, *, migrated: bool = True
    ) -> AsyncIterator[str]:
        """A fresh database of `kind` (lrod's schema in it), removed after."""
        if kind == SQLITE:
            async with sqlite_database(self.work, prefix) as url:
                yield url
        else:
            assert self.cluster is not None
            async with pg_database(self.cluster, prefix, migrated=migrated) as url:
                yield url

    def lrod_server(
        self, url: str, *, workers: int, name: str
    ) -> contextlib.AbstractAsyncContextManager[Child]:
        """lrod's Service in a process of its own (API, plus `workers` embedded
        workers; 0: none, which is how Submit is measured with workers paused)."""
        args = ["-m", "bench.servers", "lrod", "--database-url", url, "--workers", str(workers)]
        return child(args, self.log(name))

    def lrod_worker(
        self, url: str, *, concurrency: int, name: str
    ) -> contextlib.AbstractAsyncContextManager[Child]:
        """A real `lrod worker` process (no API) on the same database."""
        args = [
            "-m", "lrod", "--log-level", "WARNING", "worker",
            "--jobs", "bench.jobs:registry",
            "--database-url", url,
            "--concurrency", str(concurrency),
        ]  # fmt: skip
        return child(args, self.log(name), announces=False)
