"""`python -m bench.call_floor`: a GetOperation's server CPU, step by step from the floor.

Starts four servers side by side, each a process of its own, and runs the
same closed loop of GetOperation-shaped calls (64 clients) against each,
rounds alternating so that all see the same machine:

- `echo`: a bare grpc.aio server answering a pre-built Operation (figure 2's
  baseline);
- `wrapped`: the same answer through lrod's one wrapper per method
  (lrod.api.calls: lenient decoding, error mapping, the rpc metrics);
- `read`: `wrapped`, plus one primary-key read per call on the event loop's
  thread through lrod's InlineReader (a plain sqlite3 connection, WAL, the
  store's pragmas), as a SQLite GetOperation reads its version;
- `lrod`: lrod's own server (bench.servers, SQLite, workers off) reading 300
  stored operations in turn, as figure 2 does.

Prints each one's rate and its server's CPU per call (the process's CPU:
the event loop, grpc's poller thread and any other). The steps between the
lines are what each layer costs inside a loaded grpc.aio server, which is not
what it costs alone: with `--extra sleep0` the `read` server calls
`time.sleep(0)` instead of reading (one release of the GIL that yields the
CPU).
A tool for finding where a call's time goes; `make bench` does not run it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import itertools
import os
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
from google.longrunning import operations_pb2
from sqlalchemy import column, select, table

from bench.client import Lrod, submit_request
from bench.load import channel, closed_loop
from bench.procs import CpuMeter, announce, child, until_terminated
from bench.stats import median
from lrod.api.calls import Registrar
from lrod.app import tune_garbage_collection
from lrod.metrics import Metrics
from lrod.store.dialect import configure_sqlite_connection
from lrod.store.engine import InlineReader

SERVICE = "bench.Floor"
GET = f"/{SERVICE}/Get"
KINDS = ("echo", "wrapped", "read", "lrod")
# The operations figure 2 reads in turn.
READ_POOL = 300


def _inline_read(path: Path) -> Any:
    """One primary-key read of a small table per call, as lrod's SQLite Get
    reads an operation's version (InlineReader, on the loop's thread)."""
    conn = sqlite3.connect(path)
    configure_sqlite_connection(conn)
    conn.execute("CREATE TABLE IF NOT EXISTS floor (id TEXT PRIMARY KEY, version INTEGER)")
    conn.execute("INSERT OR REPLACE INTO floor VALUES ('a', 1)")
    conn.close()
    reader = InlineReader(str(path))
    floor = table("floor", column("id"), column("version"))
    read = reader.prepare(select(floor.c.version).where(floor.c.id == "a"))
    params = dict.fromkeys(read.binds, "a")
    return lambda: reader.first_raw(read, params)


def _sleep0() -> None:
    time.sleep(0)


_HASHED = b"x" * 4096


def _release() -> None:
    # hashlib lets go of the GIL for data over 2 KiB: a release with no
    # system call and about the read's own length of work.
    hashlib.sha256(_HASHED).digest()


def _syscalls() -> None:
    # Three system calls with the GIL held, as many as a read makes (two
    # fcntl locks and a stat): os.getpid does not release it.
    os.getpid()
    os.getpid()
    os.getpid()


EXTRAS = {"sleep0": _sleep0, "release": _release, "syscalls": _syscalls}


async def serve(kind: str, extra: str, work: Path) -> None:
    message = operations_pb2.Operation(name="operations/floor")
    answer = message.SerializeToString()
    step: Any = None
    if kind == "read":
        step = _inline_read(work / "floor.db") if extra == "none" else EXTRAS[extra]

    async def echo(request: Any, context: grpc.aio.ServicerContext) -> Any:
        return message  # figure 2's baseline: a message, serialized by grpc

    async def get(request: Any, context: grpc.aio.ServicerContext) -> bytes:
        if step is not None:
            step()
        return answer  # as lrod's Get: bytes, passed through by the wrapper

    def handler(behaviour: Any) -> grpc.RpcMethodHandler:
        return grpc.unary_unary_rpc_method_handler(
            behaviour,
            request_deserializer=operations_pb2.GetOperationRequest.FromString,
            response_serializer=operations_pb2.Operation.SerializeToString,
        )

    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    if kind == "echo":
        generic = grpc.method_handlers_generic_handler(SERVICE, {"Get": handler(echo)})
        server.add_generic_rpc_handlers((generic,))
    else:
        methods = Registrar(Metrics())
        methods.add_registered_method_handlers(SERVICE, {"Get": handler(get)})
        methods.install(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    tune_garbage_collection()  # as lrod's server does
    announce(port)
    await until_terminated()
    await server.stop(1.0)


async def run(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="lrod-floor-"))
    try:
        await _measure(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def _measure(args: argparse.Namespace, work: Path) -> None:
    async with contextlib.AsyncExitStack() as stack:
        pids: dict[str, int] = {}
        calls: dict[str, Any] = {}
        request = operations_pb2.GetOperationRequest(name="operations/floor")
        for kind in KINDS:
            if kind == "lrod":
                url = f"sqlite:///{work / 'lrod.db'}"
                command = ["-m", "bench.servers", "lrod", "--database-url", url]
            else:
                command = ["-m", "bench.call_floor", "--serve", kind, "--extra", args.extra]
                command += ["--work", str(work)]
            server = await stack.enter_async_context(child(command, work / f"{kind}.log"))
            opened = await stack.enter_async_context(channel(server.port))
            pids[kind] = server.pid
            if kind == "lrod":
                lrod = Lrod(opened)
                names = [(await lrod.submit(submit_request())).name for _ in range(READ_POOL)]
                turn = itertools.cycle(names)

                async def read_lrod(_: int, lrod: Lrod = lrod, turn: Any = turn) -> object:
                    return await lrod.get(next(turn))

                calls[kind] = read_lrod
            else:
                stub = opened.unary_unary(
                    GET,
                    request_serializer=operations_pb2.GetOperationRequest.SerializeToString,
                    response_deserializer=operations_pb2.Operation.FromString,
                )

                async def read_floor(_: int, stub: Any = stub) -> object:
                    return await stub(request)

                calls[kind] = read_floor
        costs: dict[str, list[float]] = {kind: [] for kind in KINDS}
        rates: dict[str, list[float]] = {kind: [] for kind in KINDS}
        for round_ in range(args.rounds):
            order = KINDS if round_ % 2 == 0 else tuple(reversed(KINDS))
            for kind in order:
                meter = CpuMeter(pids[kind])
                meter.start()
                result = await closed_loop(
                    calls[kind], clients=args.clients, warmup=1.0, window=args.window
                )
                share = meter.stop()
                rates[kind].append(result.rate)
                costs[kind].append(share / result.rate * 1e6 if result.rate else 0.0)
                print(
                    f"round {round_} {kind:8s} {result.rate:7.0f} calls/s,"
                    f" server CPU {share:.0%} ({costs[kind][-1]:.0f} us/call)",
                    flush=True,
                )
        floor = median(costs["echo"])
        label = {"read": "read" if args.extra == "none" else args.extra}
        for kind in KINDS:
            print(
                f"{label.get(kind, kind):8s} {median(rates[kind]):7.0f} calls/s,"
                f" {median(costs[kind]):4.0f} us/call, {median(costs[kind]) / floor:.2f}x echo's"
            )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.call_floor", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--window", type=float, default=4.0, help="seconds measured per round")
    parser.add_argument(
        "--extra",
        choices=("none", *EXTRAS),
        default="none",
        help="what the `read` server does per call instead of reading: sleep0, time.sleep(0);"
        " release, a GIL release without a system call (hashlib); syscalls, three system"
        " calls with the GIL held",
    )
    parser.add_argument("--serve", choices=KINDS[:3], help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        asyncio.run(serve(args.serve, args.extra, args.work))
        return
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
