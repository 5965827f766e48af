"""`lrod serve --processes N`: N serving processes on one port, as grpc's
multiprocessing example does it.

Python runs one thread of Python at a time per process, and lrod's server is
CPU-bound in Python; so one process uses one core. Here the parent reserves
the port (a socket bound with SO_REUSEPORT, never listening), starts N
children (spawned, not forked: grpc must not be forked), each a whole lrod
Service whose gRPC server binds the same port with `grpc.so_reuseport`, and
the kernel spreads new connections over them. They share nothing but the
database, as processes on several machines do.

The parent forwards SIGTERM and SIGINT to every child (each drains as a lone
`lrod serve` does) and returns once all have exited. A child that exits on
its own stops the others: the parent then exits 1, for its supervisor to
restart it whole.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import signal
import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from multiprocessing.connection import Connection, wait
from types import FrameType
from typing import Any

from lrod.settings import LogSettings, Settings, default_worker_id

log = logging.getLogger("lrod")

# How long the parent waits for its children to serve before giving up.
START_TIMEOUT = 120.0


class AddressInUse(Exception):
    """The address to listen on is taken: one line for the operator."""


def split_address(address: str) -> tuple[str, int]:
    # One rule for every listener: no host means loopback (lrod.listen).
    from lrod.listen import split_address as split

    return split(address)


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check_free(address: str) -> None:
    """AddressInUse if something listens on `address` already. Probed with a
    plain bind (SO_REUSEADDR, as grpc binds, but not SO_REUSEPORT, which
    would let it join another server's port)."""
    host, port = split_address(address)
    if port == 0:
        return
    for family, kind, proto, _, where in socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    ):
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(where)
            except OSError as error:
                raise AddressInUse(
                    f"cannot listen on {address}: {error.strerror or error}"
                ) from None


@contextmanager
def reserved(address: str) -> Iterator[str]:
    """Hold `address` (its port chosen now if 0) with a SO_REUSEPORT socket
    that never listens, so that the children can bind it too."""
    host, port = split_address(address)
    family, kind, proto, _, where = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    with socket.socket(family, kind, proto) as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            holder.bind(where)
        except OSError as error:
            raise AddressInUse(f"cannot listen on {address}: {error.strerror or error}") from None
        yield _join(host, holder.getsockname()[1])


def _metrics_address(address: str | None, index: int) -> str | None:
    """Child `index` serves its own metrics on the port after the previous
    child's (each process has its own counters: scrape every one)."""
    if address is None:
        return None
    host, port = split_address(address)
    return _join(host, port + index if port else 0)


def child_settings(settings: Settings, address: str, http: str | None, index: int) -> Settings:
    return dataclasses.replace(
        settings,
        address=address,
        http_address=http,
        metrics_address=_metrics_address(settings.metrics_address, index),
        reuse_port=True,
        migrate=False,
    )


def serve_processes(settings: Settings, count: int, logging_settings: LogSettings) -> int:
    """Run `count` serving processes until SIGTERM or SIGINT; the exit code."""
    check_free(settings.address)
    if settings.http_address is not None:
        check_free(settings.http_address)
    with ExitStack() as stack:
        address = stack.enter_context(reserved(settings.address))
        http = None
        if settings.http_address is not None:
            http = stack.enter_context(reserved(settings.http_address))
        if settings.migrate:
            from lrod.store.migrate import upgrade

            upgrade(settings.database_url)
        return _supervise(
            [child_settings(settings, address, http, i) for i in range(count)],
            logging_settings,
            address,
        )


def _supervise(children: list[Settings], logging_settings: LogSettings, address: str) -> int:
    context = multiprocessing.get_context("spawn")
    processes: list[Any] = []
    ready: list[Connection] = []
    stopping = False

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for process in processes:
            if process.pid is not None and process.exitcode is None:
                os.kill(process.pid, signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for index, settings in enumerate(children):
            reader, writer = context.Pipe(duplex=False)
            process = context.Process(
                target=_child,
                args=(settings, logging_settings, writer),
                name=f"lrod-serve-{index}",
            )
            process.start()
            writer.close()
            processes.append(process)
            ready.append(reader)
        if stopping:
            forward(signal.SIGTERM, None)
        elif not _all_ready(processes, ready):
            log.error("a serving process did not start; stopping the others")
            forward(signal.SIGTERM, None)
        else:
            log.info("serving on %s with %d processes", address, len(processes))
        sentinels = {process.sentinel: process for process in processes}
        failed = False
        while sentinels:
            for sentinel in wait(list(sentinels)):
                process = sentinels.pop(sentinel)
                process.join()
                if not stopping:
                    log.error(
                        "serving process %s exited (code %s); stopping the others",
                        process.name,
                        process.exitcode,
                    )
                    forward(signal.SIGTERM, None)
                failed = failed or process.exitcode != 0
        return 1 if failed or not _clean(processes) else 0
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for reader in ready:
            reader.close()


def _all_ready(processes: list[Any], ready: list[Connection]) -> bool:
    """Wait until every child serves, or one of them exits first."""
    waiting = set(ready)
    sentinels = {process.sentinel for process in processes}
    while waiting:
        found = wait([*waiting, *sentinels], timeout=START_TIMEOUT)
        if not found:
            log.error("the serving processes did not start within %.0f s", START_TIMEOUT)
            return False
        for item in found:
            if item in sentinels:
                return False
            assert isinstance(item, Connection)
            try:
                item.recv()
            except EOFError:
                return False
            waiting.discard(item)
    return True


def _clean(processes: list[Any]) -> bool:
    return all(process.exitcode == 0 for process in processes)


def _child(settings: Settings, logging_settings: LogSettings, ready: Connection) -> None:
    # The parent forwards the terminal's Ctrl-C: a child of its own process
    # group does not get it twice.
    os.setpgrp()
    import asyncio

    from lrod import logs
    from lrod.app import Service, run
    from lrod.jobs.registry import load_registry

    logs.configure(logging_settings.level, logging_settings.json)
    if settings.workers is not None:
        workers = dataclasses.replace(settings.workers, worker_id=default_worker_id())
        settings = dataclasses.replace(settings, workers=workers)

    def started(_service: Service) -> None:
        ready.send(True)
        ready.close()

    asyncio.run(run(settings, load_registry(settings.jobs), on_ready=started))
