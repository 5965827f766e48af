"""Figures 1 and 2 with their baselines, interleaved round by round: Submit
(durable, workers off) at each client count and GetOperation at the highest,
against the echo server and the databases' own commit rates."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import defaultdict

from google.longrunning import operations_pb2

from bench.baselines import Echo, pg_commit_rate, sqlite_commit_rate
from bench.client import Lrod, submit_request
from bench.context import DATABASE_NAMES, POSTGRESQL, SQLITE, Context
from bench.load import Call, LoadResult, channel, closed_loop
from bench.procs import CpuMeter, child
from bench.results import Figure
from bench.stats import median, percentile, ratios

PART = "throughput"
BASELINES = "0. Baselines (this machine, same run)"
SUBMIT = "1. Submit throughput (durable, workers off)"
GET = "2. GetOperation throughput"
# Operations created before the rounds, for GetOperation to read.
READ_POOL = 300


class Rounds:
    """Round-by-round results per key."""

    def __init__(self) -> None:
        self.loads: defaultdict[str, list[LoadResult]] = defaultdict(list)
        self.rates: defaultdict[str, list[float]] = defaultdict(list)
        self.cpu: defaultdict[str, list[float]] = defaultdict(list)

    def load(self, key: str, result: LoadResult, cpu: float | None = None) -> None:
        self.loads[key].append(result)
        self.rates[key].append(result.rate)
        if cpu is not None:
            self.cpu[key].append(cpu)

    def rate(self, key: str, value: float) -> None:
        self.rates[key].append(value)


async def measure(ctx: Context) -> list[Figure]:
    plan = ctx.plan
    top = max(plan.concurrencies)
    request = submit_request()
    rounds = Rounds()
    async with contextlib.AsyncExitStack() as stack:
        clients: dict[str, Lrod] = {}
        pids: dict[str, int] = {}
        for db in ctx.databases:
            url = await stack.enter_async_context(ctx.database(db, "throughput"))
            server = await stack.enter_async_context(
                ctx.lrod_server(url, workers=0, name=f"throughput-{db}")
            )
            clients[db] = Lrod(await stack.enter_async_context(channel(server.port)))
            pids[db] = server.pid
        # lrod's own answer to a Submit is what the echo server answers.
        sample = await clients[SQLITE].submit(request)
        response_file = ctx.work / "operation.bin"
        response_file.write_bytes(sample.SerializeToString())
        echo_server = await stack.enter_async_context(
            child(
                ["-m", "bench.servers", "echo", "--response-file", str(response_file)],
                ctx.log("echo"),
            )
        )
        echo = Echo(
            await stack.enter_async_context(channel(echo_server.port)),
            request,
            operations_pb2.GetOperationRequest(name=sample.name),
        )
        pools = {db: await _read_pool(lrod) for db, lrod in clients.items()}
        commit_url = None
        if ctx.cluster is not None:
            commit_url = await stack.enter_async_context(
                ctx.database(POSTGRESQL, "commit", migrated=False)
            )
        commit_file = ctx.work / "commit.db"

        for round_n in range(plan.rounds):
            last = round_n == plan.rounds - 1
            for clients_n in plan.concurrencies:
                key = f"echo.submit.c{clients_n}"
                rounds.load(key, await echo.submit(clients_n, plan.warmup, plan.window))
                for db, lrod in clients.items():
                    key = f"submit.{db}.c{clients_n}"
                    call = _submit(lrod, request)
                    profile = last and clients_n == top
                    rounds.load(
                        key, *await _lrod_load(ctx, key, call, clients_n, pids[db], profile)
                    )
                if commit_url is not None:
                    rate = await pg_commit_rate(commit_url, clients_n, plan.warmup, plan.window)
                    rounds.rate(f"commit.{POSTGRESQL}.c{clients_n}", rate)
            rounds.load(f"echo.get.c{top}", await echo.get(top, plan.warmup, plan.window))
            for db, lrod in clients.items():
                key = f"get.{db}.c{top}"
                call = _get(lrod, pools[db])
                rounds.load(key, *await _lrod_load(ctx, key, call, top, pids[db], last))
            rate = await asyncio.to_thread(
                sqlite_commit_rate, commit_file, plan.warmup, plan.window
            )
            rounds.rate(f"commit.{SQLITE}", rate)
    return _figures(ctx, rounds, len(sample.SerializeToString()))


async def _read_pool(lrod: Lrod) -> list[str]:
    request = submit_request()
    return [(await lrod.submit(request)).name for _ in range(READ_POOL)]


def _submit(lrod: Lrod, request: object) -> Call:
    async def call(_: int) -> object:
        return await lrod.jobs.Submit(request)

    return call


def _get(lrod: Lrod, names: list[str]) -> Call:
    turn = itertools.cycle(names)

    async def call(_: int) -> object:
        return await lrod.get(next(turn))

    return call


async def _lrod_load(
    ctx: Context, key: str, call: Call, clients: int, pid: int, profile: bool
) -> tuple[LoadResult, float]:
    """A closed loop on lrod, with the share of a core its server used (and
    a profile of it, in the last round)."""
    plan = ctx.plan
    meter = CpuMeter(pid)
    recording = (
        ctx.profiler.record(key, pid, plan.warmup + plan.window)
        if profile
        else contextlib.nullcontext()
    )
    async with recording:
        meter.start()
        result = await closed_loop(call, clients=clients, warmup=plan.warmup, window=plan.window)
        return result, meter.stop()


def _latency_detail(loads: list[LoadResult], cpu: list[float] | None = None) -> dict[str, object]:
    return {
        "server_cpu_rounds": cpu or [],
        "p50_ms_rounds": [percentile(r.latencies, 50) * 1000 for r in loads],
        "p99_ms_rounds": [percentile(r.latencies, 99) * 1000 for r in loads],
        "calls_rounds": [r.completed for r in loads],
        "errors": sum(r.errors for r in loads),
        "first_error": next((r.first_error for r in loads if r.first_error), ""),
    }


def _figures(ctx: Context, rounds: Rounds, operation_bytes: int) -> list[Figure]:
    top = max(ctx.plan.concurrencies)
    rates = rounds.rates
    figures: list[Figure] = []
    for clients_n in ctx.plan.concurrencies:
        key = f"echo.submit.c{clients_n}"
        figures.append(
            Figure(
                key, BASELINES, f"grpc.aio echo, Submit-shaped, {clients_n} clients", "rpc/s",
                rates[key], part=PART,
                note=f"answers a pre-built {operation_bytes}-byte Operation",
                detail=_latency_detail(rounds.loads[key]),
            )
        )  # fmt: skip
    key = f"echo.get.c{top}"
    figures.append(
        Figure(
            key, BASELINES, f"grpc.aio echo, GetOperation-shaped, {top} clients", "rpc/s",
            rates[key], part=PART, detail=_latency_detail(rounds.loads[key]),
        )
    )  # fmt: skip
    figures.append(
        Figure(
            f"commit.{SQLITE}", BASELINES, "SQLite commits, 1 row each (WAL, synchronous=FULL)",
            "tx/s", rates[f"commit.{SQLITE}"], part=PART, note="one connection: one writer",
        )
    )  # fmt: skip
    if ctx.cluster is not None:
        for clients_n in ctx.plan.concurrencies:
            key = f"commit.{POSTGRESQL}.c{clients_n}"
            figures.append(
                Figure(
                    key, BASELINES,
                    f"PostgreSQL commits, 1 row each (fsync, sync commit), {clients_n} conns",
                    "tx/s", rates[key], part=PART,
                )
            )  # fmt: skip
    for db in ctx.databases:
        for clients_n in ctx.plan.concurrencies:
            key = f"submit.{db}.c{clients_n}"
            base = f"echo.submit.c{clients_n}"
            commit = f"commit.{db}" if db == SQLITE else f"commit.{db}.c{clients_n}"
            detail = _latency_detail(rounds.loads[key], rounds.cpu[key])
            detail["vs_commit_rate"] = median(rates[key]) / median(rates[commit])
            figures.append(
                Figure(
                    key, SUBMIT, f"{DATABASE_NAMES[db]}, {clients_n} clients", "ops/s",
                    rates[key], base, ratios(rates[key], rates[base]), PART,
                    note=f"{detail['vs_commit_rate']:.2f}x the database's commit rate; "
                f"server CPU {median(rounds.cpu[key]):.0%} of a core",
                    detail=detail,
                )
            )  # fmt: skip
        key, base = f"get.{db}.c{top}", f"echo.get.c{top}"
        figures.append(
            Figure(
                key, GET, f"{DATABASE_NAMES[db]}, {top} clients", "ops/s",
                rates[key], base, ratios(rates[key], rates[base]), PART,
                note=f"server CPU {median(rounds.cpu[key]):.0%} of a core",
                detail=_latency_detail(rounds.loads[key], rounds.cpu[key]),
            )
        )  # fmt: skip
    return figures
