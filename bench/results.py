"""What a run measured: one Figure per table row, serialisable to JSON."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.stats import median


@dataclass
class Figure:
    """One row: a quantity measured over rounds, and (for lrod's figures) its
    round-by-round ratio to a baseline measured in the same rounds."""

    key: str
    group: str
    label: str
    unit: str
    rounds: list[float] = field(default_factory=list)
    baseline: str | None = None
    ratios: list[float] = field(default_factory=list)
    # The --only name of the part of the run that measures it.
    part: str = ""
    note: str = ""
    # Per-round detail (latency percentiles, error counts, sample sizes).
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def measured(self) -> bool:
        return bool(self.rounds)

    @property
    def value(self) -> float:
        return median(self.rounds)

    @property
    def ratio(self) -> float:
        return median(self.ratios) if self.ratios else math.nan

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["median"] = None if not self.measured else self.value
        data["ratio_median"] = None if not self.ratios else self.ratio
        return data


def not_measured(
    key: str, group: str, label: str, unit: str, part: str, why: str, baseline: str | None = None
) -> Figure:
    return Figure(
        key, group, label, unit, baseline=baseline, part=part, note=f"not measured: {why}"
    )


class Results:
    def __init__(self) -> None:
        self.figures: dict[str, Figure] = {}

    def add(self, *figures: Figure) -> None:
        for figure in figures:
            self.figures[figure.key] = figure

    def get(self, key: str) -> Figure | None:
        return self.figures.get(key)

    def __iter__(self) -> Iterator[Figure]:
        return iter(self.figures.values())
