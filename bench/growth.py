"""Figure 6: growth. Submit throughput and GetOperation p99 (64 clients each)
with the smaller and then the larger number of operations stored; the rows
are put in place with SQL in the store's shape (bench.bulk)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools

from bench import bulk
from bench.client import Lrod, submit_request
from bench.context import DATABASE_NAMES, Context
from bench.load import LoadResult, channel, closed_loop
from bench.results import Figure
from bench.stats import percentile, ratios

PART = "growth"
GROUP = "6. Growth: operations already stored"
CLIENTS = 64
READ_SAMPLE = 1000


async def _rounds(
    ctx: Context, url: str, name: str, profile: str | None
) -> tuple[list[LoadResult], list[LoadResult]]:
    plan = ctx.plan
    names = await asyncio.to_thread(bulk.sample_names, url, READ_SAMPLE)
    turn = itertools.cycle(names)
    request = submit_request()
    submits: list[LoadResult] = []
    gets: list[LoadResult] = []
    async with ctx.lrod_server(url, workers=0, name=name) as server, channel(server.port) as ch:
        lrod = Lrod(ch)

        async def submit(_: int) -> object:
            return await lrod.jobs.Submit(request)

        async def get(_: int) -> object:
            return await lrod.get(next(turn))

        for round_n in range(plan.growth_rounds):
            last = profile is not None and round_n == plan.growth_rounds - 1
            for call, found, what in ((submit, submits, "submit"), (get, gets, "get")):
                recording = (
                    ctx.profiler.record(f"{profile}.{what}", server.pid, plan.warmup + plan.window)
                    if last
                    else contextlib.nullcontext()
                )
                async with recording:
                    found.append(
                        await closed_loop(
                            call, clients=CLIENTS, warmup=plan.warmup, window=plan.window
                        )
                    )
    return submits, gets


async def measure(ctx: Context) -> list[Figure]:
    figures: list[Figure] = []
    small, large = ctx.plan.growth_sizes
    for db in ctx.databases:
        found: dict[int, tuple[list[LoadResult], list[LoadResult]]] = {}
        async with ctx.database(db, "growth") as url:
            for size in (small, large):
                stored = await asyncio.to_thread(bulk.count, url)
                await asyncio.to_thread(bulk.load, url, size - stored, bulk.SUCCEEDED)
                profile = f"growth.{db}.{size}" if size == large else None
                found[size] = await _rounds(ctx, url, f"growth-{db}-{size}", profile)
        figures.extend(_figures(ctx, db, found))
    return figures


def _figures(
    ctx: Context, db: str, found: dict[int, tuple[list[LoadResult], list[LoadResult]]]
) -> list[Figure]:
    small, large = ctx.plan.growth_sizes
    name = DATABASE_NAMES[db]
    figures: list[Figure] = []
    for size in (small, large):
        submits, gets = found[size]
        submit_rates = [r.rate for r in submits]
        get_p99 = [percentile(r.latencies, 99) * 1000 for r in gets]
        base_submit = f"growth.{db}.submit.{small}"
        base_get = f"growth.{db}.get_p99.{small}"
        later = size == large
        small_submits, small_gets = found[small]
        errors = sum(r.errors for r in submits) + sum(r.errors for r in gets)
        figures.append(
            Figure(
                f"growth.{db}.submit.{size}", GROUP,
                f"{name}, Submit, {CLIENTS} clients, {size:,} stored", "ops/s", submit_rates,
                base_submit if later else None,
                ratios(submit_rates, [r.rate for r in small_submits]) if later else [],
                PART, detail={"errors": errors},
            )
        )  # fmt: skip
        small_p99 = [percentile(r.latencies, 99) * 1000 for r in small_gets]
        figures.append(
            Figure(
                f"growth.{db}.get_p99.{size}", GROUP,
                f"{name}, GetOperation p99, {CLIENTS} clients, {size:,} stored", "ms", get_p99,
                base_get if later else None,
                ratios(get_p99, small_p99) if later else [],
                PART,
                note=f"{sum(r.rate for r in gets) / len(gets):.0f} ops/s",
                detail={"errors": errors, "rates": [r.rate for r in gets]},
            )
        )  # fmt: skip
    return figures
