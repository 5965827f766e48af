"""Facts about the machine and software a run measured on."""

from __future__ import annotations

import datetime
import os
import platform
import shutil
import sqlite3
import subprocess
from pathlib import Path

import psutil

from bench.peers import version
from bench.procs import ROOT


def _run(*args: str) -> str:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=20, check=False)
    except OSError:
        return ""
    return done.stdout.strip()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _postgres() -> str:
    pg_ctl = shutil.which("pg_ctl") or next(
        iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), reverse=True)), None
    )
    return _run(str(pg_ctl), "--version") if pg_ctl else "not installed"


def facts(work: Path) -> dict[str, str]:
    redis = shutil.which("redis-server")
    disk = psutil.disk_usage(str(work))
    dirty = _run("git", "-C", str(ROOT), "status", "--porcelain", "--", "src", "generated")
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _run("git", "-C", str(ROOT), "rev-parse", "--short", "HEAD")
        + (" (with uncommitted changes under src/)" if dirty else ""),
        "cpu": f"{_cpu_model()}, {os.cpu_count()} cores",
        "memory": f"{psutil.virtual_memory().total / 2**30:.0f} GiB",
        "disk": f"{work} on a {disk.total / 2**30:.0f} GiB filesystem",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "grpcio": version("grpcio"),
        "sqlalchemy": version("sqlalchemy"),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": _postgres(),
        "asyncpg / psycopg": f"{version('asyncpg')} / {version('psycopg')}",
        "procrastinate": version("procrastinate"),
        "pgqueuer": version("pgqueuer"),
        "celery / redis-py": f"{version('celery')} / {version('redis')}",
        "redis-server": _run(redis, "--version").split(" sha=")[0] if redis else "not installed",
        "py-spy": version("py-spy"),
    }
