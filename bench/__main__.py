"""`python -m bench`: run every part (or `--only` some), print the table, and
write docs/benchmarks.md and bench/results/latest.json (a full run of every
part) or bench/results/quick.* / only.* (otherwise)."""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType

from bench import backlog, busy_reads, e2e, growth, latency, processes, throughput, watchers
from bench.context import Context
from bench.goals import judge
from bench.infra import postgres_cluster
from bench.machine import facts
from bench.plan import FULL, QUICK
from bench.procs import ROOT
from bench.profile import Profiler, Summary, summarise
from bench.report import as_json, markdown, terminal
from bench.results import Figure, Results

PARTS: dict[str, ModuleType] = {
    "throughput": throughput,
    "latency": latency,
    "e2e": e2e,
    "backlog": backlog,
    "watchers": watchers,
    "growth": growth,
    "busy": busy_reads,
    "processes": processes,
}
RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "benchmarks.md"


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke run (well under 2 min)")
    parser.add_argument(
        "--only", action="append", choices=sorted(PARTS), help="run only this part (repeatable)"
    )
    parser.add_argument("--no-profile", action="store_true", help="do not attach py-spy")
    parser.add_argument("--keep-work", action="store_true", help="keep the scratch folder")
    parser.add_argument(
        "--report-from",
        type=Path,
        metavar="JSON",
        help="measure nothing: write the report again from a run's raw figures",
    )
    return parser.parse_args(argv)


def _methods() -> dict[str, str]:
    return {
        name: " ".join((inspect.getdoc(module) or "").split()) for name, module in PARTS.items()
    }


async def _run_parts(ctx: Context, parts: list[str], results: Results) -> None:
    for name in parts:
        began = time.monotonic()
        print(f"== {name}", flush=True)
        measure: Callable[[Context], Awaitable[list[Figure]]] = PARTS[name].measure
        try:
            results.add(*await measure(ctx))
        except Exception as error:  # one part failing must not lose the others
            traceback.print_exc()
            why = f"{type(error).__name__}: {error}".splitlines()[0][:300]
            group = getattr(PARTS[name], "GROUP", name)
            results.add(Figure(f"{name}.failed", group, f"{name}", "", part=name,
                               note=f"not measured: the part failed ({why})"))  # fmt: skip
        print(f"   {time.monotonic() - began:.0f} s", flush=True)


def _report_again(path: Path) -> int:
    """docs/benchmarks.md (or quick/only .md) again from a run's JSON, e.g.
    after bench/findings.md changed."""
    data = json.loads(path.read_text())
    plan = QUICK if data["plan"]["name"] == "quick" else FULL
    results = Results()
    for raw in data["figures"]:
        raw.pop("median", None)
        raw.pop("ratio_median", None)
        results.add(Figure(**raw))
    profiles = {
        name: Summary(s["samples"], *([tuple(pair) for pair in s[k]] for k in Summary.LISTS))
        for name, s in data["profiles"].items()
    }
    verdicts = judge(results, plan)
    command, elapsed = data["command"], data["elapsed_seconds"]
    doc = markdown(results, verdicts, plan, data["machine"], profiles, _methods(), command, elapsed)
    target = DOC if path.stem == "latest" else path.with_suffix(".md")
    target.write_text(doc)
    print(terminal(results, verdicts))
    print(f"\nwrote {target}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    if args.report_from is not None:
        return _report_again(args.report_from)
    plan = QUICK if args.quick else FULL
    parts = args.only or list(PARTS)
    command = "python -m bench" + (" --quick" if args.quick else "")
    command += "".join(f" --only {p}" for p in args.only or [])
    complete = not args.quick and args.only is None
    work = Path(tempfile.mkdtemp(prefix="lrod-bench-"))
    began = time.monotonic()
    results = Results()
    machine = facts(work)  # the commit measured is the one checked out at the start
    try:
        with postgres_cluster() as cluster:
            ctx = Context(
                plan,
                work,
                None if isinstance(cluster, str) else cluster,
                no_postgres=cluster if isinstance(cluster, str) else "",
                profiler=Profiler(work / "profiles", enabled=not args.no_profile),
            )
            asyncio.run(_run_parts(ctx, parts, results))
            profiles = {name: summarise(path) for name, path in ctx.profiler.files.items()}
        elapsed = time.monotonic() - began
        verdicts = judge(results, plan)
        print(terminal(results, verdicts))
        stem = "latest" if complete else ("quick" if args.quick else "only")
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{stem}.json").write_text(
            as_json(results, verdicts, plan, machine, profiles, command, elapsed)
        )
        doc = markdown(results, verdicts, plan, machine, profiles, _methods(), command, elapsed)
        target = DOC if complete else RESULTS / f"{stem}.md"
        target.write_text(doc)
        print(f"\nwrote {target.relative_to(ROOT)} and bench/results/{stem}.json "
              f"in {elapsed / 60:.1f} min")  # fmt: skip
    finally:
        if args.keep_work:
            print(f"scratch folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
