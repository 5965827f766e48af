"""How much each figure measures: the full run and the --quick smoke run."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    name: str
    rounds: int
    # Closed-loop throughput windows (seconds).
    warmup: float
    window: float
    concurrencies: tuple[int, ...]
    # Completion-to-client latency: samples per round and method.
    latency_samples: int
    polling_samples: int
    # End-to-end jobs per system and rounds of it.
    e2e_jobs: int
    e2e_rounds: int
    # Processing rates: a queued backlog, and bulk through BatchSubmit; rounds
    # of each (every round runs PgQueuer and lrod on each database once).
    backlog_jobs: int
    bulk_jobs: int
    processing_rounds: int
    # Many waiters.
    watchers: int
    watcher_rounds: int
    # Growth: operations stored before measuring.
    growth_sizes: tuple[int, int]
    growth_rounds: int
    # Reads under load: WaitOperation calls held, seconds of Gets per phase.
    busy_waiters: int
    busy_window: float
    busy_rounds: int
    # Profiling window (seconds) for each missed goal.
    profile_seconds: float


FULL = Plan(
    name="full",
    rounds=3,
    warmup=0.5,
    window=1.5,
    concurrencies=(1, 16, 64),
    latency_samples=60,
    polling_samples=24,
    e2e_jobs=10_000,
    e2e_rounds=1,
    backlog_jobs=20_000,
    # The 100,000: `--only backlog` took 7.0 min with it on this
    # machine under load (bulk at 798 / 655 / 2,062 jobs/s for lrod SQLite,
    # lrod PostgreSQL, PgQueuer), about 3.8 min more than 30,000 would, so
    # the full plan stays under its 15 minutes (10.3 min with 30,000).
    bulk_jobs=100_000,
    # PgQueuer's bulk alone swung 4,991-7,287 jobs/s between one-round runs
    # on day 14 (bench/findings.md): three rounds, the ratio their median.
    processing_rounds=3,
    watchers=10_000,
    watcher_rounds=1,
    growth_sizes=(10_000, 1_000_000),
    growth_rounds=2,
    busy_waiters=3_000,
    busy_window=8.0,
    busy_rounds=1,
    profile_seconds=4.0,
)

QUICK = Plan(
    name="quick",
    rounds=1,
    warmup=0.2,
    window=0.5,
    concurrencies=(1, 16, 64),
    latency_samples=15,
    polling_samples=8,
    e2e_jobs=600,
    e2e_rounds=1,
    backlog_jobs=2_000,
    bulk_jobs=5_000,
    processing_rounds=1,
    watchers=1_000,
    watcher_rounds=1,
    growth_sizes=(2_000, 50_000),
    growth_rounds=2,
    busy_waiters=300,
    busy_window=3.0,
    busy_rounds=1,
    profile_seconds=1.5,
)
