"""The run's output: a table on the terminal, docs/benchmarks.md and the raw
figures as JSON."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.goals import Verdict
from bench.plan import Plan
from bench.profile import Summary
from bench.results import Figure, Results

FINDINGS = Path(__file__).with_name("findings.md")
TOP_FRAMES = 8


def _number(value: float) -> str:
    if math.isnan(value):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def measured(figure: Figure) -> str:
    if not figure.measured:
        return figure.note
    text = f"{_number(figure.value)} {figure.unit}"
    if len(figure.rounds) > 1:
        text += f" [{_number(min(figure.rounds))}-{_number(max(figure.rounds))}]"
    return text


def ratio(figure: Figure) -> str:
    if not figure.ratios:
        return ""
    text = f"{figure.ratio:.2f}"
    if len(figure.ratios) > 1:
        text += f" [{min(figure.ratios):.2f}-{max(figure.ratios):.2f}]"
    return text


def _baseline(results: Results, figure: Figure) -> str:
    if figure.baseline is None:
        return ""
    base = results.get(figure.baseline)
    return base.label if base is not None else figure.baseline


def grouped(results: Results) -> list[tuple[str, list[Figure]]]:
    """Figures by group, groups in order of their names ("0. ...", "1. ...")."""
    groups: dict[str, list[Figure]] = {}
    for figure in results:
        groups.setdefault(figure.group, []).append(figure)
    return sorted(groups.items())


def _notes(figure: Figure) -> str:
    return "" if not figure.measured else figure.note


# -- terminal -----------------------------------------------------------------
def terminal(results: Results, verdicts: Sequence[Verdict]) -> str:
    rows = [("figure", "measured: median [min-max]", "ratio", "to")]
    lines: list[str] = []
    for group, figures in grouped(results):
        rows.append((f"-- {group}", "", "", ""))
        for figure in figures:
            rows.append((figure.label, measured(figure), ratio(figure), figure.baseline or ""))
    limits = (64, 40, 18, 24)
    widths = [min(limit, max(len(r[i]) for r in rows)) for i, limit in enumerate(limits)]
    for row in rows:
        cells = zip(row, widths, strict=True)
        lines.append("  ".join(cell[:w].ljust(w) for cell, w in cells).rstrip())
    lines.append("")
    for verdict in verdicts:
        lines.append(f"{verdict.word.strip('*'):>12}  {verdict.goal}: {verdict.measured}")
    return "\n".join(lines)


# -- markdown -----------------------------------------------------------------
def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _profile(name: str, summary: Summary) -> list[str]:
    lines = [f"#### `{name}` ({summary.samples} samples)", ""]
    if summary.samples == 0:
        return [*lines, "No samples.", ""]
    packages = ", ".join(f"{p} {s:.0%}" for p, s in summary.packages[:TOP_FRAMES])
    lines += [f"Packages on the stack under the event loop (share of samples): {packages}.", ""]
    lines += _table(
        ["Top frames by own time", "share"],
        [(f"`{f}`", f"{s:.1%}") for f, s in summary.self_time[:TOP_FRAMES]],
    )
    lines.append("")
    lines += _table(
        ["lrod frames on the stack", "share"],
        [(f"`{f}`", f"{s:.1%}") for f, s in summary.lrod_inclusive[:TOP_FRAMES]],
    )
    return [*lines, ""]


def markdown(
    results: Results,
    verdicts: Sequence[Verdict],
    plan: Plan,
    machine: dict[str, str],
    profiles: dict[str, Summary],
    methods: dict[str, str],
    command: str,
    elapsed: float,
) -> str:
    out = [
        "# Benchmarks",
        "",
        f"Written by `{command}` on {machine['date']} (plan `{plan.name}`, "
        f"{elapsed / 60:.1f} minutes); every figure below comes from that one run. "
        "Run it again with `make bench` (full) or `make bench-quick` (smoke run, writes "
        "`bench/results/quick.*` instead of this page). Raw figures: "
        "[`bench/results/latest.json`](../bench/results/latest.json).",
        "",
        "This machine is shared and noisy, so lrod is measured beside its baselines in the "
        "same rounds, alternating: a ratio is lrod's figure over its baseline's, round by "
        "round, shown as the median with the spread `[lowest-highest]` of the rounds. "
        "Measured values are medians with their spread too.",
        "",
        "## Goals",
        "",
    ]
    out += _table(
        ["Goal (issues 9 and 10)", "Measured", "Met?"],
        [(v.goal, v.measured, v.word) for v in verdicts],
    )
    missed = [v for v in verdicts if v.met is False]
    if missed:
        out += ["", f"{len(missed)} of {len(verdicts)} goals are missed; see "
                "[Where the time goes](#where-the-time-goes)."]  # fmt: skip
    out += ["", "## Figures", ""]
    for group, figures in grouped(results):
        out += [f"### {group}", ""]
        out += _table(
            ["Figure", "Measured: median [spread]", "Ratio to baseline", "Baseline", "Rounds",
             "Notes", "Command"],
            [
                (figure.label, measured(figure), ratio(figure), _baseline(results, figure),
                 str(len(figure.rounds)), _notes(figure), f"`{command_for(figure.part, command)}`")
                for figure in figures
            ],
        )  # fmt: skip
        out.append("")
    out += ["## Machine", ""]
    out += _table(["", ""], list(machine.items()))
    out += ["", "## Where the time goes", ""]
    if FINDINGS.exists():
        out += [FINDINGS.read_text().strip(), ""]
    wanted = [p for v in missed for p in v.profiles]
    shown = [p for p in dict.fromkeys(wanted) if p in profiles]
    if shown:
        out += [
            "### Profiles of this run",
            "",
            "py-spy (`--nonblocking --gil`, 200 Hz) on lrod's processes during the last round "
            "of each measurement whose goal is missed: only the thread holding the GIL is "
            "sampled, so the shares are of the Python work that keeps the process busy "
            "(waiting in the event loop is not counted).",
            "",
        ]
        for name in shown:
            out += _profile(name, profiles[name])
    out += ["## How each figure is measured", ""]
    out += [
        f"- **{part}** (`{command_for(part, command)}`): {text}" for part, text in methods.items()
    ]
    return "\n".join(out) + "\n"


def command_for(part: str, command: str) -> str:
    """The command that measures `part` alone."""
    quick = " --quick" if "--quick" in command else ""
    return f"python -m bench{quick} --only {part}"


# -- JSON ---------------------------------------------------------------------
def as_json(
    results: Results,
    verdicts: Sequence[Verdict],
    plan: Plan,
    machine: dict[str, str],
    profiles: dict[str, Summary],
    command: str,
    elapsed: float,
) -> str:
    data: dict[str, Any] = {
        "command": command,
        "plan": plan.__dict__,
        "elapsed_seconds": elapsed,
        "machine": machine,
        "figures": [f.as_json() for f in results],
        "goals": [
            {"goal": v.goal, "measured": v.measured, "met": v.met, "figures": v.figures}
            for v in verdicts
        ],
        "profiles": {name: s.__dict__ for name, s in profiles.items()},
    }
    return json.dumps(_clean(data), indent=1, allow_nan=False) + "\n"


def _clean(value: Any) -> Any:
    """NaN (a percentile of nothing) as null; tuples as lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value
