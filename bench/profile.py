"""Where lrod's time goes: py-spy attached to lrod's processes during one
round of each measurement (non-blocking, so the process is not paused; only
the thread holding the GIL is sampled, so the samples are the Python work
that keeps a process busy), and the stacks it writes summarised into top
frames."""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import shutil
import sys
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

RATE = 200
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")


def pyspy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


class Profiler:
    """Records at most one profile per name."""

    def __init__(self, folder: Path, enabled: bool = True) -> None:
        self.folder = folder
        self.binary = pyspy() if enabled else None
        self.files: dict[str, Path] = {}

    @contextlib.asynccontextmanager
    async def record(self, name: str, pid: int, seconds: float) -> AsyncIterator[None]:
        if self.binary is None or name in self.files:
            yield
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        out = self.folder / f"{name}.txt"
        with (self.folder / f"{name}.log").open("ab") as log:
            process = await asyncio.create_subprocess_exec(
                self.binary, "record", "--pid", str(pid),
                "--duration", str(max(1, math.ceil(seconds))), "--rate", str(RATE),
                "--nonblocking", "--gil", "--format", "raw", "--output", str(out),
                stdout=log, stderr=log,
            )  # fmt: skip
        try:
            yield
        finally:
            try:
                await asyncio.wait_for(process.wait(), seconds + 20)
            except TimeoutError:
                process.kill()
                await process.wait()
            if out.exists() and out.stat().st_size > 0:
                self.files[name] = out


@dataclass
class Summary:
    LISTS: ClassVar[tuple[str, ...]] = ("self_time", "lrod_inclusive", "packages")

    samples: int
    self_time: list[tuple[str, float]] = field(default_factory=list)
    lrod_inclusive: list[tuple[str, float]] = field(default_factory=list)
    packages: list[tuple[str, float]] = field(default_factory=list)


def _package(path: str) -> str:
    """The package of a py-spy file name (relative to its sys.path entry):
    `lrod.store` for lrod's modules, the top package or module otherwise."""
    parts = path.split("/")
    if parts[0] == "lrod" and len(parts) > 2:
        return f"lrod.{parts[1]}"
    return parts[0].removesuffix(".py")


def _short(frame: str) -> tuple[str, str]:
    """(function and file, file) of a py-spy frame `func (file:line)`."""
    match = _FRAME.match(frame)
    if match is None:
        return frame, ""
    return f"{match['func']} ({match['file']})", match["file"]


def _last_callback(frames: list[tuple[str, str]]) -> int:
    """The index of the innermost `Handle._run` (asyncio running a callback
    or task step), or -1."""
    for index in range(len(frames) - 1, -1, -1):
        if frames[index][0].startswith("Handle._run ("):
            return index
    return -1


def summarise(raw: Path, top: int = 12) -> Summary:
    self_time: Counter[str] = Counter()
    lrod: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_short(f) for f in stack.split(";")]
        self_time[frames[-1][0]] += count
        # What an event-loop callback runs, not the loop and entry point under it.
        work = frames[_last_callback(frames) + 1 :]
        for name in {name for name, path in work if path.startswith("lrod/")}:
            lrod[name] += count
        for package in {_package(path) for _, path in work if path[:1] not in ("", "<")}:
            packages[package] += count
    if total == 0:
        return Summary(0)

    def share(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, count / total) for name, count in counter.most_common(top)]

    return Summary(total, share(self_time), share(lrod), share(packages))
