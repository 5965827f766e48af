"""`lrod db upgrade` from several processes at once on one fresh database."""

from __future__ import annotations

import asyncio
import os
import secrets
import sys

import psycopg
import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from tests.execution.support import ROOT

pytestmark = pytest.mark.slow


async def test_concurrent_upgrades_are_safe(postgres_template: str) -> None:
    name = f"lrod_fresh_{secrets.token_hex(4)}"
    admin = postgres_template
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = f"{admin.rpartition('/')[0]}/{name}"
    try:
        env = os.environ | {"LROD_DATABASE_URL": url}
        processes = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "lrod",
                "db",
                "upgrade",
                cwd=ROOT,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            for _ in range(4)
        ]
        async with asyncio.timeout(60):
            results = [await p.communicate() for p in processes]
        assert [p.returncode for p in processes] == [0] * 4, [r[1][-500:] for r in results]
        with psycopg.connect(url) as conn:
            versions = conn.execute("SELECT version_num FROM alembic_version").fetchall()
            tables = {
                r[0]
                for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            }
        config = Config()
        config.set_main_option("script_location", "lrod.store:migrations")
        assert versions == [(ScriptDirectory.from_config(config).get_current_head(),)]
        assert {"operations", "operation_labels", "attempts", "expired_operations"} <= tables
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
