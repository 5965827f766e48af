"""What the run stands on: a throwaway PostgreSQL cluster, fresh databases in
it, SQLite files, and a redis-server of its own, all on 127.0.0.1 and all
removed afterwards."""

from __future__ import annotations

import contextlib
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg

from lrod.store.migrate import upgrade
from lrod.testing.postgres import PostgresUnavailable, ThrowawayCluster, start_cluster

REDIS_START_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def postgres_cluster() -> Iterator[ThrowawayCluster | str]:
    """The cluster, or why there is none."""
    try:
        cluster = start_cluster()
    except PostgresUnavailable as error:
        yield str(error)
        return
    try:
        yield cluster
    finally:
        cluster.remove()


def pg_dsn(url: str) -> str:
    """A libpq DSN for a SQLAlchemy-style URL."""
    return url.replace("postgresql+psycopg://", "postgresql://")


def _admin(cluster: ThrowawayCluster, statement: str) -> None:
    with psycopg.connect(pg_dsn(cluster.url()), autocommit=True) as conn:
        conn.execute(statement)


@contextlib.asynccontextmanager
async def pg_database(
    cluster: ThrowawayCluster, prefix: str, *, migrated: bool = True
) -> AsyncIterator[str]:
    """A new database in the cluster (lrod's schema in it unless not
    `migrated`), dropped on exit."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    _admin(cluster, f"CREATE DATABASE {name}")
    url = cluster.url(name)
    try:
        if migrated:
            upgrade(url)
        yield url
    finally:
        _admin(cluster, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextlib.asynccontextmanager
async def sqlite_database(folder: Path, prefix: str) -> AsyncIterator[str]:
    """A new SQLite file with lrod's schema, removed on exit."""
    path = folder / f"{prefix}-{secrets.token_hex(4)}.db"
    url = f"sqlite:///{path}"
    upgrade(url)
    try:
        yield url
    finally:
        for suffix in ("", "-wal", "-shm", "-journal"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)


async def scratch_database(stack: contextlib.AsyncExitStack, db: str, prefix: str) -> str:
    """A new database with lrod's schema for one run of a micro-benchmark:
    with `db` "postgresql" in a throwaway cluster (SystemExit if there is
    none), else a SQLite file in a temporary folder; both removed when
    `stack` closes."""
    if db == "postgresql":
        cluster = stack.enter_context(postgres_cluster())
        if isinstance(cluster, str):
            raise SystemExit(f"no PostgreSQL: {cluster}")
        return await stack.enter_async_context(pg_database(cluster, prefix))
    work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"lrod-{prefix}-")))
    return await stack.enter_async_context(sqlite_database(work, prefix))


@contextlib.contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    """A redis-server of the run's own on a free port; yields its URL. Raises
    FileNotFoundError when there is no redis-server on this machine."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    data = folder / f"redis-{port}"
    data.mkdir(parents=True, exist_ok=True)
    log = (data / "redis.log").open("ab")
    process = subprocess.Popen(
        [
            binary,
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--protected-mode", "yes",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(data),
        ],
        stdout=log,
        stderr=log,
    )  # fmt: skip
    try:
        _wait_for_redis(port, process)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(data, ignore_errors=True)


def _wait_for_redis(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + REDIS_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5) as s:
            s.sendall(b"PING\r\n")
            if s.recv(16).startswith(b"+PONG"):
                return
        time.sleep(0.05)
    raise RuntimeError("redis-server did not answer PING")
