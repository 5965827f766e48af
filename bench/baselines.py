"""The machine's own limits, measured in the same rounds as lrod: a bare
grpc.aio echo server, and each database's commit rate for one small row per
transaction under lrod's durability settings."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import grpc
import psycopg
from google.longrunning import operations_pb2

from bench.infra import pg_dsn
from bench.load import LoadResult, closed_loop
from bench.servers import ECHO_GET, ECHO_SUBMIT
from lrod.store.engine import configure_sqlite_connection
from lrod.v1 import job_service_pb2

COMMIT_TABLE = "CREATE TABLE IF NOT EXISTS bench_commit (id BIGSERIAL PRIMARY KEY, v TEXT)"
SQLITE_COMMIT_TABLE = "CREATE TABLE IF NOT EXISTS bench_commit (id INTEGER PRIMARY KEY, v TEXT)"
SMALL_ROW = "x" * 32
# One SQLite commit loop stops after this many commits whatever its window.
MAX_COMMITS = 5_000_000


class Echo:
    """Calls to the echo server with the same messages lrod's calls carry."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        submit: job_service_pb2.SubmitRequest,
        get: operations_pb2.GetOperationRequest,
    ) -> None:
        self._submit = channel.unary_unary(
            ECHO_SUBMIT,
            request_serializer=job_service_pb2.SubmitRequest.SerializeToString,
            response_deserializer=operations_pb2.Operation.FromString,
        )
        self._get = channel.unary_unary(
            ECHO_GET,
            request_serializer=operations_pb2.GetOperationRequest.SerializeToString,
            response_deserializer=operations_pb2.Operation.FromString,
        )
        self._submit_request = submit
        self._get_request = get

    async def submit(self, clients: int, warmup: float, window: float) -> LoadResult:
        async def call(_: int) -> object:
            return await self._submit(self._submit_request)

        return await closed_loop(call, clients=clients, warmup=warmup, window=window)

    async def get(self, clients: int, warmup: float, window: float) -> LoadResult:
        async def call(_: int) -> object:
            return await self._get(self._get_request)

        return await closed_loop(call, clients=clients, warmup=warmup, window=window)


def sqlite_commit_rate(path: Path, warmup: float, window: float) -> float:
    """Commits per second of one connection (SQLite has one writer), each
    BEGIN IMMEDIATE; INSERT one small row; COMMIT, in WAL with synchronous=FULL."""
    conn = sqlite3.connect(path)
    try:
        configure_sqlite_connection(conn)
        conn.execute(SQLITE_COMMIT_TABLE)
        start = time.monotonic() + warmup
        end = start + window
        done = 0
        for _ in range(MAX_COMMITS):
            now = time.monotonic()
            if now >= end:
                break
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO bench_commit (v) VALUES (?)", (SMALL_ROW,))
            conn.execute("COMMIT")
            if now >= start:
                done += 1
        return done / window
    finally:
        conn.close()


async def pg_commit_rate(url: str, clients: int, warmup: float, window: float) -> float:
    """Commits per second of `clients` connections, each inserting one small
    row per transaction (autocommit), with fsync and synchronous_commit on."""
    dsn = pg_dsn(url)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as setup:
        await setup.execute(COMMIT_TABLE)
    connections = [
        await psycopg.AsyncConnection.connect(dsn, autocommit=True) for _ in range(clients)
    ]
    try:

        async def call(n: int) -> object:
            conn = connections[n]
            return await conn.execute(
                "INSERT INTO bench_commit (v) VALUES (%s)", (SMALL_ROW,), prepare=True
            )

        result = await closed_loop(call, clients=clients, warmup=warmup, window=window)
        return result.rate
    finally:
        await asyncio.gather(*(c.close() for c in connections))
