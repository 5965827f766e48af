"""`python -m bench.ab --before DIR`: one lever, before and after, in one run.

Starts lrod (API only, SQLite or PostgreSQL) from this tree and from another
source tree (e.g. `git archive main | tar -x -C DIR`) side by side and runs
the same closed-loop calls against each, alternating round by round, so that
both see the same load on a shared machine. Prints each side's rate per
round, server CPU, p99 and the median ratio after/before. A tool for
measuring one change; `make bench` does not run it.

`--call job` times a Submit and a WaitOperation until the job is done
(with `--workers` embedded workers): a job's round trip, per client.
`--call e2e` measures figure 4's shape instead: each round submits `--jobs`
no-op jobs from the clients to a server with `--workers` embedded workers
until all are done (rate in jobs/s, server CPU per job). `--call bulk` is
figure 9's shape: the `--jobs` through BatchSubmit (1,000 per call, 4
callers, as bench.backlog), until all are done. Without `--before`
both sides run this tree; `--before-args` / `--after-args` pass server
options to one side (e.g. `--after-args=--hand-off`), so that one setting is
measured on and off.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sqlite3
import tempfile
import time
from pathlib import Path

import psycopg

from bench import backlog
from bench.client import Lrod, submit_request
from bench.drive import drive, poll_after
from bench.infra import pg_database, pg_dsn, postgres_cluster, sqlite_database
from bench.load import channel, closed_loop
from bench.procs import ROOT, CpuMeter, child
from bench.stats import median, percentile
from lrod.v1 import job_service_pb2


def _tree_env(tree: Path | None) -> dict[str, str] | None:
    if tree is None:
        return None
    paths = [tree / "src", tree / "generated", tree]
    return {"PYTHONPATH": os.pathsep.join(str(p) for p in paths)}


async def run(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="lrod-ab-"))
    sides = {"before": args.before, "after": None}
    extra = {"before": args.before_args.split(), "after": args.after_args.split()}
    workers = ["--workers", str(args.workers)] if args.call in ("e2e", "bulk", "job") else []
    async with contextlib.AsyncExitStack() as stack:
        urls: dict[str, str] = {}
        if args.db == "postgresql":
            cluster = stack.enter_context(postgres_cluster())
            if isinstance(cluster, str):
                raise SystemExit(f"no PostgreSQL: {cluster}")
            for side in sides:
                urls[side] = await stack.enter_async_context(pg_database(cluster, f"ab_{side}"))
        else:
            for side in sides:
                urls[side] = await stack.enter_async_context(sqlite_database(work, side))
        clients: dict[str, Lrod] = {}
        meters: dict[str, CpuMeter] = {}
        for side, tree in sides.items():
            server = await stack.enter_async_context(
                child(
                    ["-m", "bench.servers", "lrod", "--database-url", urls[side]]
                    + workers
                    + extra[side],
                    work / f"{side}.log",
                    env=_tree_env(tree),
                    cwd=tree or ROOT,
                )
            )
            clients[side] = Lrod(await stack.enter_async_context(channel(server.port)))
            meters[side] = CpuMeter(server.pid)
        names = {
            side: [(await lrod.submit(submit_request())).name for _ in range(300)]
            for side, lrod in clients.items()
        }
        request = submit_request()
        rates: dict[str, list[float]] = {side: [] for side in sides}
        # Server CPU per call (microseconds): less sensitive than the rate to
        # other work on the machine.
        costs: dict[str, list[float]] = {side: [] for side in sides}
        for round_ in range(args.rounds):
            order = list(sides) if round_ % 2 == 0 else list(reversed(sides))
            for side in order:
                lrod, pool = clients[side], names[side]

                async def call(index: int, lrod: Lrod = lrod, pool: list[str] = pool) -> object:
                    if args.call == "submit":
                        return await lrod.submit(request)
                    if args.call == "job":
                        return await lrod.wait_done((await lrod.submit(request)).name)
                    return await lrod.get(pool[index % len(pool)])

                if args.call in ("e2e", "bulk"):
                    meters[side].start()
                    measure = _e2e if args.call == "e2e" else _bulk
                    rate = await measure(lrod, urls[side], args)
                    cpu = meters[side].stop()
                    rates[side].append(rate)
                    cost = cpu / rate * 1e6 if rate else 0.0
                    costs[side].append(cost)
                    print(
                        f"round {round_} {side:6} {args.call} {args.db}: {rate:7.0f} jobs/s,"
                        f" server CPU {cpu:.0%} ({cost:.0f} us/job)",
                        flush=True,
                    )
                    continue
                meters[side].start()
                result = await closed_loop(
                    call, clients=args.clients, warmup=args.warmup, window=args.window
                )
                cpu = meters[side].stop()
                rates[side].append(result.rate)
                cost = cpu / result.rate * 1e6 if result.rate else 0.0
                costs[side].append(cost)
                p99 = percentile(result.latencies, 99) * 1000 if result.latencies else 0.0
                print(
                    f"round {round_} {side:6} {args.call} {args.db}: {result.rate:7.0f} rpc/s,"
                    f" server CPU {cpu:.0%} ({cost:.0f} us/call), p99 {p99:.1f} ms,"
                    f" errors {result.errors}",
                    flush=True,
                )
        for what, values, unit in (("rate", rates, "rpc/s"), ("server CPU", costs, "us/call")):
            ratios = [a / b for a, b in zip(values["after"], values["before"], strict=True) if b]
            print(
                f"{what}, {args.call} {args.db}, {args.clients} clients: before"
                f" {median(values['before']):.0f} {unit}, after {median(values['after']):.0f}"
                f" {unit}, after/before {median(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}]"
            )


async def _e2e(lrod: Lrod, url: str, args: argparse.Namespace) -> float:
    """One round of figure 4's shape: jobs/s from the first Submit until all
    of this round's jobs are done."""
    request = submit_request()
    base = await _succeeded(url)

    async def done() -> int:
        return await _succeeded(url) - base

    result = await drive(
        lambda: lrod.jobs.Submit(request),
        done,
        jobs=args.jobs,
        clients=args.clients,
        timeout=max(60.0, args.jobs / 50),
    )
    return result.rate


async def _bulk(lrod: Lrod, url: str, args: argparse.Namespace) -> float:
    """One round of figure 9's shape: jobs/s from the first BatchSubmit
    until all of this round's jobs are done."""
    batch = job_service_pb2.BatchSubmitRequest(requests=[submit_request()] * backlog.BATCH)
    calls = max(1, args.jobs // backlog.BATCH)
    base = await _succeeded(url)
    began = time.monotonic()
    left = iter(range(calls))

    async def caller() -> None:
        for _ in left:
            await lrod.jobs.BatchSubmit(batch)

    await asyncio.gather(*(caller() for _ in range(backlog.CALLERS)))
    jobs = calls * backlog.BATCH
    while (done := await _succeeded(url) - base) < jobs:
        if time.monotonic() - began > max(60.0, jobs / 50):
            raise TimeoutError(f"{done} of {jobs} jobs done")
        await asyncio.sleep(poll_after(done, jobs, time.monotonic() - began))
    return float(jobs / (time.monotonic() - began))


async def _succeeded(url: str) -> int:
    sql = "SELECT count(*) FROM operations WHERE state = 'SUCCEEDED'"
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")

        def count() -> int:
            with contextlib.closing(sqlite3.connect(path, timeout=10)) as conn:
                return int(conn.execute(sql).fetchone()[0])

        return await asyncio.to_thread(count)
    async with await psycopg.AsyncConnection.connect(pg_dsn(url), autocommit=True) as conn:
        row = await (await conn.execute(sql)).fetchone()
        return int(row[0]) if row else 0


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__)
    parser.add_argument("--before", type=Path, help="the other source tree (default: this one)")
    parser.add_argument("--before-args", default="", help="server options of the before side")
    parser.add_argument("--after-args", default="", help="server options of the after side")
    parser.add_argument("--call", choices=("get", "submit", "job", "e2e", "bulk"), default="get")
    parser.add_argument("--jobs", type=int, default=3000, help="e2e, bulk: jobs per round")
    parser.add_argument("--workers", type=int, default=16, help="e2e, job: embedded workers")
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--window", type=float, default=2.0)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
