"""The issues' goals (issue 9: each call near the gRPC floor; issue 10: the
fastest job system measured), judged against a run's figures."""

from __future__ import annotations

import math
from dataclasses import dataclass

from bench.context import DATABASE_NAMES, POSTGRESQL, SQLITE
from bench.plan import Plan
from bench.results import Figure, Results


@dataclass(frozen=True)
class Verdict:
    goal: str
    measured: str
    met: bool | None  # None: not measured
    figures: tuple[str, ...]
    # The profiles (bench.profile names) that show where the time went.
    profiles: tuple[str, ...] = ()

    @property
    def word(self) -> str:
        return {True: "met", False: "**missed**", None: "not measured"}[self.met]


@dataclass(frozen=True)
class Bound:
    """`value` (the figure's median, or its median ratio) against a limit."""

    ratio: bool
    limit: float
    above: bool  # the value must be at least (or, if `strict`, more than) the limit
    show: str  # format for the value, e.g. "{:.2f} x echo"
    strict: bool = False

    def read(self, figure: Figure) -> float:
        return figure.ratio if self.ratio else figure.value

    def holds(self, value: float) -> bool:
        if self.above:
            return value > self.limit if self.strict else value >= self.limit
        return value <= self.limit


def _check(
    goal: str, figure: Figure | None, bound: Bound, profiles: tuple[str, ...] = ()
) -> Verdict:
    if figure is None or not figure.measured:
        why = figure.note if figure is not None else "not measured"
        return Verdict(goal, why, None, (figure.key,) if figure else (), profiles)
    value = bound.read(figure)
    if math.isnan(value):
        return Verdict(goal, "no baseline in this run", None, (figure.key,), profiles)
    return Verdict(goal, bound.show.format(value), bound.holds(value), (figure.key,), profiles)


def judge(results: Results, plan: Plan) -> list[Verdict]:
    get = results.get
    top = max(plan.concurrencies)
    small, large = plan.growth_sizes
    verdicts: list[Verdict] = []
    for db, floor in ((SQLITE, 0.6), (POSTGRESQL, 0.5)):
        key = f"submit.{db}.c{top}"
        verdicts.append(
            _check(
                f"Submit, {top} clients, {DATABASE_NAMES[db]}: >= {floor} x echo",
                get(key), Bound(True, floor, True, "{:.2f} x echo"), (key,),
            )
        )  # fmt: skip
    for db in (SQLITE, POSTGRESQL):
        key = f"get.{db}.c{top}"
        verdicts.append(
            _check(
                f"GetOperation, {top} clients, {DATABASE_NAMES[db]}: >= 0.8 x echo",
                get(key), Bound(True, 0.8, True, "{:.2f} x echo"), (key,),
            )
        )  # fmt: skip
    for db, limit, where in ((SQLITE, 10.0, "one process"), (POSTGRESQL, 15.0, "across processes")):
        roles = ("server",) if db == SQLITE else ("server", "worker")
        for method, name in (("wait", "WaitOperation"), ("watch", "WatchOperation")):
            verdicts.append(
                _check(
                    f"Completion -> client p99, {name}, {DATABASE_NAMES[db]} ({where}): "
                    f"<= {limit:.0f} ms",
                    get(f"latency.{db}.{method}"), Bound(False, limit, False, "{:.1f} ms"),
                    tuple(f"latency.{db}.wait.{role}" for role in roles),
                )
            )  # fmt: skip
    for db in (SQLITE, POSTGRESQL):
        key = f"e2e.lrod.{db}"
        figure = get(key)
        best = (figure.baseline or "") if figure is not None else ""
        show = "{:.2f} x the best peer (" + best.removeprefix("e2e.") + ")"
        verdicts.append(
            _check(
                f"End-to-end, {DATABASE_NAMES[db]}: ahead of every peer",
                figure, Bound(True, 1.0, True, show, strict=True), (key,),
            )
        )  # fmt: skip
    watchers = f"{plan.watchers:,} watchers"
    verdicts.append(
        _check(
            f"{watchers}: memory within 1.1 x of the bare grpc.aio server's",
            get("watchers.memory"),
            Bound(True, 1.1, False, "{:.2f} x the bare server's"), ("watchers.server",),
        )
    )  # fmt: skip
    verdicts.append(
        _check(
            f"{watchers}: every stream woken within 1.5 x of the bare server's wake time",
            get("watchers.wake"), Bound(True, 1.5, False, "slowest {:.2f} x the bare server's"),
            ("watchers.server",),
        )
    )  # fmt: skip
    verdicts.append(
        _check(
            f"GetOperation p99 at 200/s with {plan.busy_waiters:,} WaitOperation calls on "
            "running jobs: within 2 x of its idle p99",
            get("busy.get_p99"), Bound(True, 2.0, False, "{:.2f} x the idle p99"),
            ("busy.server",),
        )
    )  # fmt: skip
    for kind, what in (
        ("backlog", f"processing {plan.backlog_jobs:,} queued no-op jobs"),
        ("bulk", f"{plan.bulk_jobs:,} no-op jobs through BatchSubmit until done"),
    ):
        for db in (SQLITE, POSTGRESQL):
            key = f"{kind}.lrod.{db}"
            verdicts.append(
                _check(
                    f"{kind.capitalize()}, {DATABASE_NAMES[db]}: {what}, >= 1.0 x PgQueuer",
                    get(key), Bound(True, 1.0, True, "{:.2f} x PgQueuer"), (key,),
                )
            )  # fmt: skip
    verdicts.append(
        _check(
            "Every core: Submit with --processes 2 (PostgreSQL, 8 channels): > 1.0 x one process",
            get("processes.2"), Bound(True, 1.0, True, "{:.2f} x one process", strict=True),
        )
    )  # fmt: skip
    for db in (SQLITE, POSTGRESQL):
        name = DATABASE_NAMES[db]
        profile = f"growth.{db}.{large}"
        verdicts.append(
            _check(
                f"Growth, {name}: Submit with {large:,} stored within 1.2 x of {small:,}",
                get(f"growth.{db}.submit.{large}"),
                Bound(True, 1 / 1.2, True, "{:.2f} x the rate at " + f"{small:,}"),
                (f"{profile}.submit",),
            )
        )  # fmt: skip
        verdicts.append(
            _check(
                f"Growth, {name}: GetOperation p99 with {large:,} stored within 1.2 x of {small:,}",
                get(f"growth.{db}.get_p99.{large}"),
                Bound(True, 1.2, False, "{:.2f} x the p99 at " + f"{small:,}"),
                (f"{profile}.get",),
            )
        )  # fmt: skip
    return verdicts
